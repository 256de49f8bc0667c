import json

import pandas as pd
import pytest

from interp.errors import InterpError
from interp.recall import pipeline
from interp.results import Run

REQUIRED = ["n_facts_known", "accuracy_base", "accuracy_mitigated", "answer_prob_base", "answer_prob_mitigated",
            "ppl_base", "ppl_mitigated", "top_argument_heads", "argument_ablation_drop", "random_ablation_drop",
            "mitigation_method", "accuracy_base_independent", "accuracy_mitigated_independent", "answer_prob_base_independent",
            "answer_prob_mitigated_independent", "frequency_source", "text_corpus"]


def test_pipeline_runs_on_every_family(tiny, tmp_path, fake_sources):
    params = dict(relations=["country_capital", "element_symbol"], max_facts=4, n_random=1, analyse="all", top_k_heads=2, shots=2)
    run = Run(tmp_path, "recall", model=tiny, params=params, seed=0)
    summary = pipeline.run(tiny, run, quick=True, **params)
    run.summary(**summary)
    folder = run.finish(png=False)
    saved = json.loads((folder / "summary.json").read_text())
    for k in REQUIRED:
        assert k in saved, k
    assert saved["frequency_source"] == "fake:wikipedia" and saved["text_corpus"] == "fake-wikipedia"
    assert saved["mitigation_method"] in ("none", "heads", "frequency", "both")
    assert len(saved["top_argument_heads"]) == 2
    for t in ("facts_known", "logit_lens", "logit_lens_drop", "argument_heads", "argument_ablation", "mlp_decomposition",
              "mlp_decomposition_layers", "anti_overconfidence", "mitigation_selection", "mitigation", "claims"):
        assert (folder / "tables" / f"{t}.csv").is_file(), t
    claims = pd.read_csv(folder / "tables" / "claims.csv")
    assert list(claims.columns) == ["claim", "measured", "paper", "verdict"] and len(claims) == 8
    mt = pd.read_csv(folder / "tables" / "mitigation.csv")
    assert set(mt["facts"]) == {"test", "independent"} and set(mt["shots"]) == {"zero-shot", "2-shot"}
    indep = mt[(mt["facts"] == "independent") & (mt["relation"] == "all") & (mt["shots"] == "zero-shot")]
    assert saved["answer_prob_base_independent"] == pytest.approx(indep["answer_prob_base"].iloc[0])
    lens = pd.read_csv(folder / "tables" / "logit_lens.csv")
    assert {"analysed", "all", "known"} >= set(lens["facts"]) >= {"analysed", "all"} and (lens["point"] == "resid_mid").any()
    assert len(list((folder / "figures").glob("*.html"))) == 6


def test_pipeline_reads_as_the_papers_steps():
    import inspect

    src = inspect.getsource(pipeline.run)
    steps = ["step_capture", "step_logit_lens", "step_argument_heads", "step_mlp_decomposition", "step_token_frequency",
             "step_anti_overconfidence", "step_mitigation", "step_claims"]
    pos = [src.index(s) for s in steps]
    assert pos == sorted(pos)
    assert len(src.splitlines()) < 30


def test_bad_parameters(tiny_models, tmp_path):
    m = tiny_models["llama"]
    run = Run(tmp_path, "recall", model=m, params={}, seed=0)
    with pytest.raises(InterpError, match="top_k_heads"):
        pipeline.run(m, run, quick=True, top_k_heads=0)
    with pytest.raises(InterpError, match="analyse"):
        pipeline.run(m, run, quick=True, analyse="some")
    with pytest.raises(InterpError, match="mitigation_mode"):
        pipeline.run(m, run, quick=True, mitigation_mode="delete")
    with pytest.raises(InterpError, match="mitigation_method"):
        pipeline.run(m, run, quick=True, mitigation_method="magic")
