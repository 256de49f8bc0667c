import json

import numpy as np
import pandas as pd
import pytest

from interp.glitch.pipeline import DEFAULTS, sample_ratio_sweep, threshold_sweep
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


@pytest.mark.real_model
def test_quick_pipeline_on_stored_ground_truth(smollm, tmp_path):
    from interp.glitch import pipeline

    params = dict(DEFAULTS, quick_vocab=600, distance_sample=60, quick_repair_glitch=4, quick_repair_normal=8,
                  sample_ratio=0.2, n_components=20, calibration_tokens=48, quick_stability_tokens=40)
    run = Run(tmp_path, "glitch", model=smollm, params=params, seed=0)
    summary = pipeline.run(smollm, run, quick=True, **params)
    run.summary(**summary)
    for k in ("vocab_size", "n_glitch_ground_truth", "precision", "recall", "f1", "time_pipeline_s", "time_exhaustive_s",
              "magikarp_recall", "repair_rate", "repair_rule_based_rate", "normal_damage_rate"):
        assert k in summary, k
    assert summary["vocab_size"] == 49152 and summary["oracle_mode"] == "stored"
    assert summary["precision"] == 1.0 and 0 < summary["recall"] <= 1
    # times come from the oracle timed in this run, and the stored answers reproduce
    assert summary["oracle_calibration_tokens"] == 48 and summary["oracle_agreement_with_stored"] >= 0.95
    assert summary["time_exhaustive_s"] == pytest.approx(summary["n_candidates"] * summary["exhaustive_s_per_token"])
    assert summary["n_tokens_searched"] == 600 and summary["n_candidates"] + sum(summary["n_excluded"].values()) == 600
    # the token-statistics baseline and the recall-target costs are measured on the same candidates
    assert summary["stats_time_s"] > 0 and 0 < summary["stats_recall"] <= 1
    assert summary["speed_ratio_floor_for_recall_target"] == pytest.approx(0.8 * summary["n_glitch_ground_truth"] / summary["n_candidates"])
    for k in ("glitchprober", "stats"):
        assert summary[f"{k}_speed_ratio_for_recall_target"] > summary["speed_ratio_floor_for_recall_target"]
    assert summary["stability_n_tokens"] == 40 and 0 <= summary["stability_glitch_kept_mean"] <= 1
    tables = {p.stem for p in (tmp_path / "glitch" / "tables").glob("*.csv")}
    assert {"glitch_tokens", "layer_distances", "method_times", "repair", "sample_ratio_sweep", "recall_cost_curve",
            "oracle_stability"} <= tables
    gt = pd.read_csv(tmp_path / "glitch" / "tables" / "glitch_tokens.csv")
    assert len(gt) == summary["n_glitch_ground_truth"] and gt.found.sum() == summary["n_found"]
    assert json.loads((tmp_path / "glitch" / "summary.json").read_text())["key_layers"] == summary["key_layers"]
