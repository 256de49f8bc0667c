import json

import numpy as np
import pandas as pd
import pytest

from interp.glitch.pipeline import DEFAULTS, claims_table, estimated_recall, sample_ratio_sweep, threshold_sweep
from interp.results import Run


def test_sweeps_count_oracle_calls():
    rng = np.random.default_rng(0)
    y = np.arange(400) % 8 == 0
    proj = rng.normal(size=(400, 5)).astype(np.float32)
    proj[y, 0] += 4
    sw = sample_ratio_sweep(proj, y, [0.1, 0.3], kernel="poly", degree=3, C=1.0, class_weight="balanced", seed=0)
    assert list(sw.sample_ratio) == [0.1, 0.3]
    assert (sw.cost_ratio == (sw.n_sample + sw.n_predicted) / 400).all()
    assert sw.recall.iloc[-1] > 0.8
    table = pd.DataFrame({"in_sample": np.arange(400) < 40, "score": np.where(y, 1.0, -1.0)})
    th = threshold_sweep(table, y, [-2.0, 0.0, 2.0])
    assert th.recall.tolist() == [1.0, 1.0, 5 / 50] and th.n_predicted.tolist() == [360, 45, 0]


def test_estimated_recall_is_exact_on_the_whole_outside_and_scales_a_sample():
    g = np.array([1, 1, 0, 0, 1, 0], bool)
    found = np.array([1, 0, 0, 1, 1, 0], bool)
    r, n = estimated_recall(4, g, found, 6)  # the evaluation set is everything outside the sample
    assert n == 7 and r == pytest.approx((4 + 2) / 7)
    r, n = estimated_recall(4, g, found, 60)  # a random tenth of the outside: 30 glitch tokens estimated
    assert n == pytest.approx(34) and r == pytest.approx((4 + 2 / 3 * 30) / 34)


def test_claims_verdicts():
    base = dict(glitch_prevalence_consensus=0.05, precision_consensus=1.0, recall_consensus=0.9, f1_consensus=0.95,
                time_ratio_consensus=0.4, repair_rate=0.3, repair_counts=True, repair_control_rate=0.1,
                search_recall_consensus=0.85, search_cost_ratio_consensus=0.45)
    c = claims_table(base)
    assert list(c.columns) == ["claim", "measured", "paper", "verdict"] and (c.verdict == "reproduced").all()
    # the cost claims pass at a looser ratio than the paper's 0.06x: the paper column says which
    cost = c[c.claim.str.contains("cost")]
    assert len(cost) == 2 and cost.paper.str.contains("0.06x").all() and cost.paper.str.contains("<= 0.5x").all()
    assert claims_table(dict(base, search_cost_ratio_consensus=0.51)).verdict.iloc[6] == "not reproduced"
    c = claims_table(dict(base, recall_consensus=0.3, f1_consensus=0.46, time_ratio_consensus=1.2, repair_rate=0.04,
                          repair_counts=False, repair_control_rate=0.5, search_cost_ratio_consensus=1.1))
    assert c.verdict.tolist() == ["reproduced", "reproduced", "not reproduced", "not reproduced", "opposite",
                                  "reproduced", "opposite", "opposite"]
    c = claims_table(dict(base, time_ratio_consensus=0.3, recall_consensus=0.2, repair_rate=None,
                          search_recall_consensus=0.5, search_cost_ratio_consensus=0.2))
    # cheap only at a low recall
    assert c.verdict.tolist()[4:] == ["not reproduced", "not reproduced", "not reproduced", "not measurable"]
    assert set(c.verdict) <= {"reproduced", "not reproduced", "opposite", "not measurable"}


@pytest.mark.real_model
def _sampled_ground_truth(folder, spec: str, n: int, seed: int):
    """A ground truth over a stated random sample of ``spec``'s vocabulary, cut from the packaged one
    (as ``python -m interp.glitch.scan --sample N --seed S`` records it)."""
    from interp.glitch.scan import ground_truth_paths, load_ground_truth, sample_ids

    truth, meta = load_ground_truth(spec)
    ids = sample_ids(meta["vocab_size"], n, seed)
    csv, meta_path = ground_truth_paths(spec, folder)
    csv.parent.mkdir(parents=True, exist_ok=True)
    truth[truth.token_id.isin(ids)].to_csv(csv, index=False, compression="gzip")
    meta_path.write_text(json.dumps({**meta, "sample": {"n": n, "seed": seed, "of": meta["vocab_size"]}}))
    return ids


def test_choose_vocabulary_searches_a_sampled_ground_truth_in_place_of_the_vocabulary(smollm):
    from interp.glitch.pipeline import choose_vocabulary

    truth = pd.DataFrame({"token_id": [5, 17, 300, 4000, 4001], "cls": "normal"})
    assert choose_vocabulary(smollm, truth, DEFAULTS, quick=False, seed=0).tolist() == list(range(smollm.d_vocab))
    assert choose_vocabulary(smollm, truth, DEFAULTS, quick=False, seed=0, sampled=True).tolist() == [5, 17, 300, 4000, 4001]
    quick = choose_vocabulary(smollm, truth, dict(DEFAULTS, quick_vocab=3), quick=True, seed=0, sampled=True)
    assert len(quick) == 3 and set(quick) <= {5, 17, 300, 4000, 4001}


@pytest.mark.parametrize("truth", ["packaged", "sampled"])
def test_quick_pipeline_on_stored_ground_truth(smollm, tmp_path, truth):
    from interp.glitch import pipeline

    params = dict(DEFAULTS, quick_vocab=600, distance_sample=60, quick_repair_glitch=4, quick_repair_normal=8,
                  sample_ratio=0.2, n_components=20, calibration_tokens=48, quick_agreement_tokens=16, quick_eval_tokens=96,
                  quick_repair_fit_normal=48)
    if truth == "sampled":
        pool = set(_sampled_ground_truth(tmp_path / "gt", smollm.spec, 3000, seed=5))
        params["ground_truth_dir"] = str(tmp_path / "gt")
    run = Run(tmp_path, "glitch", model=smollm, params=params, seed=0)
    summary = pipeline.run(smollm, run, quick=True, **params)
    run.summary(**summary)
    if truth == "sampled":  # the quick vocabulary is drawn from the stored sample, and the whole vocabulary is projected
        searched = pd.read_csv(tmp_path / "glitch" / "tables" / "detection.csv").token_id
        assert set(searched) <= pool and summary["vocab_sample_n"] == 3000 and summary["vocab_sample_seed"] == 5
        assert summary["projected_full_scan_s"] > summary["time_exhaustive_stored_sample_s"] > 0
        assert "n_glitch_ground_truth_full_vocab" not in summary
    else:
        assert "vocab_sample_n" not in summary and summary["n_glitch_ground_truth_full_vocab"] > 1000
    for k in ("vocab_size", "n_glitch_ground_truth", "precision", "recall", "f1", "time_pipeline_s", "time_exhaustive_s",
              "magikarp_recall", "repair_rate", "repair_rule_based_rate", "normal_damage_rate",
              "precision_consensus", "recall_consensus", "f1_consensus", "time_ratio_consensus", "n_glitch_consensus",
              "repair_control_rate", "repair_damage_rate_control", "search_recall_consensus", "search_time_ratio_consensus",
              "search_cost_ratio_consensus"):
        assert k in summary, k
    assert summary["vocab_size"] == 49152 and summary["oracle_mode"] == "stored"
    assert summary["precision"] == 1.0 and 0 < summary["recall"] <= 1
    # times come from the oracle timed in this run, and the stored answers reproduce
    assert summary["oracle_calibration_tokens"] == 48 and summary["oracle_agreement_with_stored"] >= 0.95
    assert summary["time_exhaustive_s"] == pytest.approx(summary["n_candidates"] * summary["exhaustive_s_per_token"])
    assert summary["n_tokens_searched"] == 600 and summary["n_candidates"] + sum(summary["n_excluded"].values()) == 600
    # the consensus label is a subset of the single-prompt label, and its oracle costs more per token
    assert 0 < summary["n_glitch_consensus"] <= summary["n_glitch_ground_truth"]
    assert summary["consensus_exhaustive_calls_per_token"] > 1 and summary["time_ratio_consensus"] > 0
    assert summary["n_eval"] == 96 and summary["n_eval_single_prompt"] == summary["n_candidates"] - summary["n_sampled"]
    # the repair is the paper's: gate and up hooks, formulas' ranges, thresholds stated
    assert 0 <= summary["repair_beta_mlp_gate"] <= 3 and 2 <= summary["repair_alpha_mlp_data"] <= 5
    assert summary["repair_threshold_mlp_gate"] > 0 and summary["repair_n_mlp_data_always"] >= 0
    assert summary["agreement_n_tokens"] == 16 and summary["magikarp_reference"] in ("unreachable", "special_tokens")
    tables = {p.stem for p in (tmp_path / "glitch" / "tables").glob("*.csv")}
    assert {"glitch_tokens", "layer_distances", "method_times", "repair", "sample_ratio_sweep", "recall_cost_curve",
            "oracle_verdicts", "claims", "consensus_eval", "consensus_threshold_sweep", "search", "search_aim_sweep"} <= tables
    # the recall-cost figure draws the target recall and the floor; the retired 0.15x time target is gone
    fig = json.loads((tmp_path / "glitch" / "figures" / "recall_cost.json").read_text())
    notes = [a.get("text", "") for a in fig["layout"].get("annotations", [])]
    assert any(t.startswith("target recall") for t in notes) and any(t.startswith("floor") for t in notes)
    assert not any("target time" in t for t in notes)
    claims = pd.read_csv(tmp_path / "glitch" / "tables" / "claims.csv")
    assert list(claims.columns) == ["claim", "measured", "paper", "verdict"] and len(claims) == 8
    # the ranked search: its sample and its verified tokens are apart, and what it found is glitch under the consensus
    search = pd.read_csv(tmp_path / "glitch" / "tables" / "search.csv")
    assert len(search) == summary["n_candidates"] and not (search.in_sample & search.verified).any()
    assert search.in_sample.sum() == summary["search_n_sampled"] and search.found.sum() == summary["search_n_found"]
    assert 0 <= summary["search_recall_consensus"] <= 1 and summary["search_time_ratio_consensus"] > 0
    assert 0 < summary["search_recall_single"] <= 1 and 0 < summary["search_time_ratio_single"] <= 2
    # its budget: a share of the exhaustive forwarded tokens its sample estimates, never passed by what the search
    # counts, and what it counts is what it reports: each call at its prompt's suffix + reply tokens, nothing for
    # the token statistics
    assert summary["search_budget"] == 0.5 and summary["search_stopped_by"] in ("aim", "budget")
    assert summary["search_budget_spent_tokens"] <= 1.001 * summary["search_budget"] * summary["search_estimated_exhaustive_tokens"]
    assert summary["search_cost_tokens"] == pytest.approx(summary["search_budget_spent_tokens"], rel=1e-9)
    from interp.glitch.consensus import oracle_templates

    assert summary["search_tokens_per_call_few_shot"] == len(oracle_templates(smollm, ["few_shot"])["few_shot"].suffix_ids) + 10
    assert 0 < summary["search_cost_ratio_consensus"] < 1.001 and 0 < summary["search_cost_ratio_single"] <= 1
    gt = pd.read_csv(tmp_path / "glitch" / "tables" / "glitch_tokens.csv")
    assert len(gt) == summary["n_glitch_ground_truth"] and gt.found.sum() == summary["n_found"]
    assert json.loads((tmp_path / "glitch" / "summary.json").read_text())["key_layers"] == summary["key_layers"]


def test_named_ground_truth_folder_must_hold_the_models_truth(smollm, tmp_path):
    """Without a folder the run falls back to running the oracle; a folder the user names that lacks
    this model's ground truth is an error, not a silent fall-back to another (slower) run."""
    from interp.errors import InterpError
    from interp.glitch import pipeline

    m = smollm
    (tmp_path / "gt").mkdir()
    params = dict(DEFAULTS, ground_truth_dir=str(tmp_path / "gt"))
    with pytest.raises(InterpError, match="no stored ground truth"):
        pipeline.run(m, Run(tmp_path / "out", "glitch", model=m, params=params, seed=0), quick=True, **params)


def test_recall_cost_figure_draws_the_target_recall_and_the_floor_and_no_time_target():
    from interp.glitch.figures import recall_cost_figure

    curve = pd.DataFrame({"method": ["svm"] * 3, "recall": [0.2, 0.6, 0.9], "cost_ratio": [0.1, 0.3, 0.5]})
    notes = [a.text for a in recall_cost_figure(curve, 0.8, 0.04, "m").layout.annotations]
    assert "target recall 0.8" in notes and "floor 0.040x" in notes and not any("target time" in t for t in notes)
