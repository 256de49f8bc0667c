import json

import pandas as pd
import pytest

from interp.errors import InterpError
from interp.results import Run
from interp.rome import pipeline

SMALL = dict(
    n_requests=3, country_requests=0, v_contexts=1, v_steps=3, prefix_lengths=[[3, 2]], cov_corpus="generic",
    cov_tokens=400, cov_max_tokens=32, cov_ridge=1e-3, ppl_generic=2, ppl_max_tokens=16, ppl_generations=2, ppl_gen_tokens=4,
    first_token_texts=3, first_token_layer_step=1, layer=1,
)


def test_pipeline_runs_end_to_end_on_a_tiny_model(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    m = tiny_models["llama"]
    run = Run(tmp_path / "out", "rome", model=m, params=SMALL)
    s = pipeline.run(m, run, quick=False, **SMALL)
    for k in ("n_requests", "layer", "collapse_rate_rome", "collapse_rate_consistent", "collapse_rate_consistent_prefix",
              "efficacy_rome", "efficacy_consistent_prefix", "denominator_median_collapse", "denominator_median_normal",
              "efficacy_collapse_cases_rome", "efficacy_collapse_cases_consistent_prefix",
              "denominator_normalized_median_collapse", "denominator_normalized_median_normal",
              "clamp_bound_fraction_collapse", "cov_corpus"):
        assert k in s
    assert s["cov_corpus"] == "interp-generic-v1" and s["cov_tokens"] == 400
    assert s["text_corpus"] == "wikipedia:heldout"  # perplexity probe on held-out Wikipedia by default
    claims = pd.read_csv(tmp_path / "out/rome/tables/claims.csv")
    assert list(claims.columns) == ["claim", "measured", "paper", "verdict"] and len(claims) == 6
    assert set(claims.verdict) <= {"reproduced", "not reproduced", "opposite", "not measurable"}
    pos = pd.read_csv(tmp_path / "out/rome/tables/positions.csv")
    assert set(pos.position_class) == {"first", "subject-first", "later"}
    manifest = json.loads((tmp_path / "out/rome/manifest.json").read_text())
    assert "edits_v_star" in run.stage_times and run.stage_times["edits_v_star"]["seconds"] > 0
    assert s["n_requests"] == 3 and s["layer"] == 1
    edits = pd.read_csv(tmp_path / "out/rome/tables/edits.csv")
    assert len(edits) == 9 and set(edits.variant) == {"rome", "consistent", "consistent_prefix"}
    # ROME keeps its own v* (clamp at the bare v0); the fixes re-optimise with the prefixed reference
    # exactly where the bare v0 is anomalous, and share ROME's v* elsewhere
    assert set(edits[edits.variant == "rome"].clamp_reference) == {"bare"}
    by = edits.set_index(["case_id", "variant"])
    for c in edits.case_id.unique():
        r = by.loc[(c, "rome")]
        anomalous = r.v0_norm < pipeline.FIX_ANOMALY_RATIO * r.v0_prefixed_norm
        for v in ("consistent", "consistent_prefix"):
            assert by.loc[(c, v), "clamp_reference"] == ("prefixed" if anomalous else "bare")
            same = by.loc[(c, v), "clamp_norm"] == pytest.approx(r.clamp_norm, rel=1e-6)
            assert same != anomalous
    on_disk = json.loads((tmp_path / "out/rome/summary.json").read_text())
    assert on_disk["n_requests"] == 3
    for f in ("denominator_vs_numerator", "perplexity_before_after", "first_token_projection", "covariance_convergence"):
        assert (tmp_path / f"out/rome/figures/{f}.html").is_file()
        title = json.loads((tmp_path / f"out/rome/figures/{f}.json").read_text())["layout"]["title"]["text"]
        assert m.spec in title and "edit_" not in title, title  # the model's name, not the last edit's stage
    again = pipeline.run(m, run, quick=False, **SMALL)
    assert again["efficacy_rome"] == s["efficacy_rome"] and run.stage_times["edit_0"]["resumed"]
    del manifest


def test_identity_covariance_is_recorded(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    m = tiny_models["llama"]
    params = dict(SMALL, n_requests=2, cov="identity", variants=["rome", "consistent", "consistent_delta"])
    run = Run(tmp_path / "out", "rome", model=m, params=params)
    s = pipeline.run(m, run, quick=False, **params)
    assert s["cov_corpus"] == "identity" and s["cov_tokens"] == 0
    edits = pd.read_csv(tmp_path / "out/rome/tables/edits.csv")
    assert set(edits.variant) == {"rome", "consistent", "consistent_delta"}


def test_bare_fix_clamp_shares_romes_v_star(tiny_models, tmp_path, monkeypatch):
    # the released C-ROME code: one v* (clamp at the bare prompt's v0) for every variant
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    m = tiny_models["llama"]
    params = dict(SMALL, n_requests=1, fix_clamp_reference="bare")
    run = Run(tmp_path / "out", "rome", model=m, params=params)
    pipeline.run(m, run, quick=False, **params)
    edits = pd.read_csv(tmp_path / "out/rome/tables/edits.csv")
    assert set(edits.clamp_reference) == {"bare"} and edits.clamp_norm.nunique() == 1 and edits.delta_norm.nunique() == 1


def test_parameters_are_checked(tiny_models, tmp_path):
    m = tiny_models["llama"]
    run = Run(tmp_path / "out", "rome", model=m)
    with pytest.raises(InterpError):
        pipeline.run(m, run, nonsense=1)
    with pytest.raises(InterpError):
        pipeline.run(m, run, layer=99)
    assert pipeline.default_layer(m) in range(m.n_layers)
    assert set(pipeline.QUICK) <= set(pipeline.DEFAULTS)


def test_default_layer_for_smollm_shape():
    class M:
        n_layers = 30

    assert pipeline.default_layer(M()) == 6


def test_quick_sizes_never_override_a_value_the_user_set():
    quick = pipeline.resolve_params({}, quick=True)
    assert quick["cov_tokens"] == pipeline.QUICK["cov_tokens"]
    assert pipeline.DEFAULTS["cov_tokens"] >= 100_000 and pipeline.DEFAULTS["cov_corpus"] == "wikipedia"
    assert pipeline.DEFAULTS["text_corpus"] == "wikipedia"
    with pytest.raises(InterpError):
        pipeline.resolve_params({"variants": ["consistent"]}, quick=False)
    with pytest.raises(InterpError):
        pipeline.resolve_params({"cov": "diag"}, quick=False)
    # set explicitly, equal to the full default: kept under --quick
    kept = pipeline.resolve_params({"cov_tokens": pipeline.DEFAULTS["cov_tokens"], "n_requests": 147}, quick=True)
    assert kept["cov_tokens"] == pipeline.DEFAULTS["cov_tokens"]
    assert kept["n_requests"] == 147 and kept["v_contexts"] == pipeline.QUICK["v_contexts"]
    assert pipeline.resolve_params({}, quick=False) == pipeline.DEFAULTS


def test_load_results_reads_the_csv_copies_without_rerunning(tmp_path):
    folder = tmp_path / "rome"
    (folder / "tables").mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"layer": 6, "n_requests": 2}))
    (folder / "manifest.json").write_text(json.dumps({"params": {"layer": None}, "model": {"spec": "m"}}))
    pd.DataFrame({"case_id": [0, 1], "denominator": [1.5, 2.5]}).to_csv(folder / "tables" / "edits.csv", index=False)
    # a model spec that cannot load: reading must not try to run the analysis
    t = pipeline.load_results(str(tmp_path), model_spec="no-such-model")
    assert t["edits"]["denominator"].tolist() == [1.5, 2.5]
    assert int(t["summary"].iloc[0].layer) == 6 and t["model"].spec[0] == "m"


def test_perplexity_figure_draws_each_edit_as_its_ratio():
    from interp.rome.figures import perplexity_before_after

    edits = pd.DataFrame({
        "variant": ["rome", "rome", "consistent_prefix", "consistent_prefix"],
        "position_class": ["first", "later", "first", "later"], "subject": list("abcd"),
        "ppl_generic_before": [40.0] * 4, "ppl_generic_after": [400.0, 40.0, 44.0, 40.0],
        "ppl_own_before": [3.0] * 4, "ppl_own_after": [30.0, 3.0, 3.0, 6.0],
    })
    fig = perplexity_before_after(edits, 2.0, "m")
    boxes = {(t.xaxis, t.name): list(t.y) for t in fig.data}
    assert boxes[("x", "generic texts")] == [10.0, 1.0] and boxes[("x2", "own generations")] == [1.0, 2.0]
    assert sorted(s.y0 for s in fig.layout.shapes) == [1.0, 1.0, 2.0, 2.0]


def test_fix_reoptimises_v_star_where_v0_is_anomalous(tiny_models, tmp_path, monkeypatch):
    # every request counted anomalous: the fixes carry their own v*, clamped at the prefixed scale
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pipeline, "FIX_ANOMALY_RATIO", 1e9)
    m = tiny_models["llama"]
    params = dict(SMALL, n_requests=1)
    run = Run(tmp_path / "out", "rome", model=m, params=params)
    pipeline.run(m, run, quick=False, **params)
    e = pd.read_csv(tmp_path / "out/rome/tables/edits.csv").set_index("variant")
    assert e.loc["rome", "clamp_reference"] == "bare" and e.loc["consistent_prefix", "clamp_reference"] == "prefixed"
    assert e.loc["consistent_prefix", "clamp_norm"] == pytest.approx(4.0 * e.loc["rome", "v0_prefixed_norm"], rel=1e-5)
    assert e.loc["rome", "clamp_norm"] == pytest.approx(4.0 * e.loc["rome", "v0_norm"], rel=1e-5)
