import json

import pytest

from interp.errors import InterpError
from interp.recall import pipeline
from interp.results import Run

REQUIRED = ["n_facts_known", "accuracy_base", "accuracy_mitigated", "answer_prob_base", "answer_prob_mitigated",
            "ppl_base", "ppl_mitigated", "top_argument_heads", "argument_ablation_drop", "random_ablation_drop"]


def test_pipeline_runs_on_every_family(tiny, tmp_path):
    params = dict(pipeline.DEFAULTS, relations=["country_capital", "element_symbol"], max_facts=4, generic_texts=2,
                  n_random=1, analyse="all", top_k_heads=2, shots=2)
    run = Run(tmp_path, "recall", model=tiny, params=params, seed=0)
    summary = pipeline.run(tiny, run, quick=True, **params)
    run.summary(**summary)
    folder = run.finish(png=False)
    saved = json.loads((folder / "summary.json").read_text())
    for k in REQUIRED:
        assert k in saved, k
    assert len(saved["top_argument_heads"]) == 2
    for t in ("facts_known", "logit_lens", "argument_heads", "argument_ablation", "mlp_decomposition", "anti_overconfidence",
              "mitigation"):
        assert (folder / "tables" / f"{t}.csv").is_file(), t
    assert len(list((folder / "figures").glob("*.html"))) == 6


def test_bad_parameters(tiny_models, tmp_path):
    m = tiny_models["llama"]
    run = Run(tmp_path, "recall", model=m, params={}, seed=0)
    with pytest.raises(InterpError, match="top_k_heads"):
        pipeline.run(m, run, quick=True, top_k_heads=0)
    with pytest.raises(InterpError, match="analyse"):
        pipeline.run(m, run, quick=True, analyse="some")
    with pytest.raises(InterpError, match="mitigation_mode"):
        pipeline.run(m, run, quick=True, mitigation_mode="delete")
