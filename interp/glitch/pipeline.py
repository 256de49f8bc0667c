"""``interp run glitch``: GlitchProber glitch-token detection and repair, with baselines.

Stages: the vocabulary (all of it, or a random subset with ``--quick``) -> GlitchProber detection
(oracle-labelled sample, per-layer distances and key layers, PCA + SVM, oracle verification) ->
scores against the stored exhaustive ground truth -> baselines (exhaustive search, uniform random
sampling at the pipeline's budget, the Magikarp unembedding indicator, the same PCA + SVM on token
statistics that need no forward pass) -> the oracle calls each detector needs for the target recall
and the recall-vs-time curves -> how much of the oracle's verdict survives a change of its worked
examples (the share no token-level detector can predict) -> a sweep of the labelled share -> repair
(GlitchProber's gap-sized rule and the fixed rule-based baseline) -> tables, figures and the
summary.

With ``oracle="stored"`` (the ``--quick`` default) the oracle's answers are looked up in the stored
ground truth and its stages' times are estimated from the exhaustive scan's time per token; repair
always generates.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np
import pandas as pd
from sklearn.svm import SVC

from interp.errors import InterpError
from interp.glitch import figures
from interp.glitch.baselines import (
    calls_for_recall,
    found_in_verification_order,
    magikarp_search,
    random_sampling,
    statistics_detector,
)
from interp.glitch.detect import Detection, glitch_prober, precision_recall
from interp.glitch.oracle import label_stability, repeat_oracle, repeat_template, stability_summary, token_classes
from interp.glitch.repair import key_neurons, neuron_activations, repair_hooks
from interp.glitch.scan import load_ground_truth
from interp.model import Model
from interp.glitch.params import PARAMS

DESCRIPTION = "Glitch tokens (GlitchProber): repeat oracle, layer distances, PCA+SVM detector, key-neuron repair, baselines"

# the parameters are declared (type, range, default, quick default, unit, meaning) in interp/glitch/params.py
DEFAULTS: dict[str, Any] = PARAMS.defaults()


def _ratios(text: Any) -> list[float]:
    vals = [float(x) for x in str(text).split(",") if str(x).strip()]
    if not vals or any(not 0 < v < 1 for v in vals):
        raise InterpError(f"sweep_ratios must be comma-separated numbers in (0, 1), not {text!r}")
    return sorted(vals)


def sample_ratio_sweep(
    projection: np.ndarray, is_glitch: np.ndarray, ratios: list[float], *, kernel: str, degree: int, C: float,
    class_weight: Optional[str], seed: int,
) -> pd.DataFrame:
    """Recall, SVM precision and oracle cost when the detector is trained on a share of the tokens.

    Uses the PCA coordinates of the main detection and the ground-truth labels, so each share costs
    only an SVM fit; the oracle cost is the sampled share plus the predicted glitch tokens.

    Args:
        projection: ``[n, k]`` PCA coordinates of every candidate.
        is_glitch: ``[n]`` ground truth.
        ratios: labelled shares to try.
        kernel: SVM kernel.
        degree: polynomial degree.
        C: SVM regularisation.
        class_weight: SVM class weights.
        seed: sampling seed.

    Returns:
        Columns ``sample_ratio, n_sample, n_predicted, recall, precision_svm, f1, cost_ratio``.
    """
    rng = np.random.default_rng(seed)
    n, total = len(is_glitch), int(is_glitch.sum())
    rows = []
    for r in ratios:
        k = max(2, int(round(r * n)))
        s = rng.choice(n, size=k, replace=False)
        mask = np.zeros(n, bool)
        mask[s] = True
        if is_glitch[s].all() or not is_glitch[s].any():
            continue
        svm = SVC(kernel=kernel, degree=degree, C=C, class_weight=class_weight, random_state=seed)
        svm.fit(projection[s], is_glitch[s])
        pred = np.zeros(n, bool)
        pred[~mask] = svm.predict(projection[~mask]).astype(bool)
        found = int((is_glitch & mask).sum() + (is_glitch & pred).sum())
        recall = found / total if total else 0.0
        prec = float((is_glitch & pred).sum() / pred.sum()) if pred.sum() else 0.0
        rows.append({"sample_ratio": r, "n_sample": k, "n_predicted": int(pred.sum()), "recall": recall,
                     "precision_svm": prec, "f1": 2 * recall / (1 + recall) if recall else 0.0,
                     "cost_ratio": (k + int(pred.sum())) / n})
    return pd.DataFrame(rows)


def threshold_sweep(table: pd.DataFrame, is_glitch: np.ndarray, thresholds: list[float]) -> pd.DataFrame:
    """Recall and oracle cost if every token with an SVM decision value above a threshold were verified.

    Args:
        table: the detection table (``in_sample``, ``score``).
        is_glitch: ground truth per row.
        thresholds: decision thresholds to try.

    Returns:
        Columns ``threshold, n_predicted, recall, precision_svm, cost_ratio``.
    """
    samp = table.in_sample.to_numpy()
    score = table.score.to_numpy()
    total = int(is_glitch.sum())
    rows = []
    for t in thresholds:
        pred = ~samp & (score > t)
        found = int((is_glitch & samp).sum() + (is_glitch & pred).sum())
        rows.append({"threshold": t, "n_predicted": int(pred.sum()), "recall": found / total if total else 0.0,
                     "precision_svm": float((is_glitch & pred).sum() / pred.sum()) if pred.sum() else 0.0,
                     "cost_ratio": (int(samp.sum()) + int(pred.sum())) / len(table)})
    return pd.DataFrame(rows)


def _shot_sets(text: Any) -> list[list[str]]:
    try:
        sets = json.loads(text) if isinstance(text, str) else text
    except ValueError as e:
        raise InterpError(f"stability_shots must be a JSON list of lists of strings, not {text!r}") from e
    if not isinstance(sets, list) or not sets or not all(isinstance(x, list) and all(isinstance(w, str) for w in x) for x in sets):
        raise InterpError(f"stability_shots must be a non-empty JSON list of lists of strings, not {text!r}")
    return sets


def recall_cost_curve(in_sample: np.ndarray, score: np.ndarray, is_glitch: np.ndarray, fixed_s: float, per_token_s: float,
                      exhaustive_s: float, n_points: int = 200) -> pd.DataFrame:
    """Recall against wall time when a detector's top-scored tokens are verified one by one.

    Args:
        in_sample: labelled-sample mask (its glitch tokens count as found, its calls as spent).
        score: decision value per token (NaN in the sample).
        is_glitch: ground truth.
        fixed_s: seconds spent besides oracle calls (features, training, prediction, layer selection).
        per_token_s: seconds per oracle call.
        exhaustive_s: the exhaustive scan's seconds (for ``cost_ratio``).
        n_points: rows kept (evenly spaced in verified count).

    Returns:
        Columns ``n_verified, recall, seconds, cost_ratio``.
    """
    found = found_in_verification_order(in_sample, score, is_glitch)
    n_rest = len(found) - 1
    k = np.unique(np.linspace(0, n_rest, min(n_points, n_rest + 1)).round().astype(int))
    secs = fixed_s + (int(np.sum(in_sample)) + k) * per_token_s
    return pd.DataFrame({"n_verified": k, "recall": found[k] / max(1, int(np.sum(is_glitch))), "seconds": secs,
                         "cost_ratio": secs / exhaustive_s})


def _calibrate_oracle(model: Model, tpl: Any, candidates: np.ndarray, gt_cls: dict, p: dict, seed: int) -> dict[str, Any]:
    """Seconds per token of the repeat oracle on a random share of ``candidates``, and how often it
    agrees with the stored ground truth."""
    import time

    rng = np.random.default_rng(seed + 1)
    ids = [int(t) for t in rng.choice(candidates, size=min(int(p["calibration_tokens"]), len(candidates)), replace=False)]
    t0 = time.perf_counter()
    got = repeat_oracle(model, ids, max_new_tokens=p["max_new_tokens"], batch_size=p["oracle_batch_size"], template=tpl).table
    secs = time.perf_counter() - t0
    agree = float(np.mean([c == gt_cls[int(t)] for t, c in zip(got.token_id, got.cls)]))
    return {"n": len(ids), "seconds": secs, "s_per_token": secs / max(1, len(ids)), "agreement": agree}


def run(model: Model, run: Any, quick: bool = False, **params: Any) -> dict[str, Any]:
    """Run the whole analysis into ``run`` and return the summary numbers (see module docstring)."""
    p = {**DEFAULTS, **params}
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise InterpError(f"unknown glitch parameter(s): {sorted(unknown)}")
    seed = int(getattr(run, "seed", 0) or 0)
    tpl = repeat_template(model)
    try:
        truth, meta = load_ground_truth(model.spec, p["ground_truth_dir"] or None)
    except InterpError:
        truth, meta = None, None
    if truth is not None and meta.get("oracle", {}).get("template", {}).get("text") != tpl.text:
        raise InterpError("the stored ground truth was made with another oracle prompt; rerun the scan")
    oracle_mode = p["oracle"]
    if oracle_mode == "auto":
        oracle_mode = "stored" if quick and truth is not None else "run"
    if oracle_mode not in ("run", "stored"):
        raise InterpError(f"oracle must be auto, run or stored, not {oracle_mode!r}")
    if oracle_mode == "stored" and truth is None:
        raise InterpError(f"oracle=stored needs a stored ground truth for {model.spec}")
    run.note(f"oracle prompt (chat={tpl.chat}): {tpl.text!r}; oracle answers: {oracle_mode}")

    rng = np.random.default_rng(seed)
    if quick:
        pool = truth.token_id.to_numpy() if truth is not None else np.arange(model.d_vocab)
        vocab = np.sort(rng.choice(pool, size=min(int(p["quick_vocab"]), len(pool)), replace=False))
    else:
        vocab = np.arange(model.d_vocab)
    kinds = [k.strip() for k in str(p["kinds"]).split(",") if k.strip()]

    gt_cls = dict(zip(truth.token_id.astype(int), truth.cls)) if truth is not None else {}
    n_judged_gt = int(truth.cls.isin(["glitch", "normal"]).sum()) if truth is not None else 0
    stored_per_token_s = meta["wall_time_s"] / n_judged_gt if truth is not None else float("nan")

    def lookup(ids: list[int]) -> list[str]:
        return [gt_cls[int(t)] for t in ids]

    def oracle_label(ids: list[int]) -> list[str]:
        if oracle_mode == "stored":
            return lookup(ids)
        return repeat_oracle(model, ids, max_new_tokens=p["max_new_tokens"], batch_size=p["oracle_batch_size"],
                             template=tpl).table.cls.tolist()

    det: Detection = run.stage("detection", lambda: glitch_prober(
        model, vocab.tolist(), sample_ratio=p["sample_ratio"], distance_sample=p["distance_sample"],
        n_key_layers=p["n_key_layers"] or None, key_layer_fraction=p["key_layer_fraction"], kinds=kinds,
        position=p["position"], n_components=p["n_components"], kernel=p["kernel"], degree=p["degree"], C=p["C"],
        class_weight=p["class_weight"] or None, decision_threshold=float(p["decision_threshold"]),
        max_new_tokens=p["max_new_tokens"],
        oracle_batch_size=p["oracle_batch_size"], feature_batch_size=p["feature_batch_size"], template=tpl,
        labeller=lookup if oracle_mode == "stored" else None, seed=seed), key=[vocab.tolist()[:8], len(vocab), oracle_mode])
    tab = det.table
    timings = dict(det.timings)
    calib: dict[str, Any] = {}
    if oracle_mode == "stored":
        # time the real oracle on a random share of the candidates on this machine, now, so every
        # time below compares like with like (and check the stored answers still reproduce)
        calib = run.stage("oracle_calibration", lambda: _calibrate_oracle(model, tpl, tab.token_id.to_numpy(), gt_cls, p, seed),
                          key=[len(vocab), int(p["calibration_tokens"])])
        per_token_s = calib["s_per_token"]
        timings["labelling"] = float(tab.in_sample.sum() * per_token_s)
        timings["verification"] = float(tab.predicted.sum() * per_token_s)
        run.note(f"labelling and verification times are estimated: oracle calls x {per_token_s * 1e3:.1f} ms per token, "
                 f"timed on {calib['n']} random candidates in this run (they agree with the stored answers on "
                 f"{calib['agreement']:.1%})")
    else:
        per_token_s = timings["labelling"] / max(1, int(tab.in_sample.sum()))
    time_pipeline = float(sum(timings.values()))
    n_cand = len(tab)
    time_exhaustive = float(n_cand * per_token_s) if truth is not None else float("nan")

    summary: dict[str, Any] = {
        "vocab_size": int(model.d_vocab),
        "n_tokens_searched": int(len(vocab)),
        "n_candidates": n_cand,
        "n_excluded": {k: int(v) for k, v in det.excluded.cls.value_counts().items()},
        "key_layers": det.key_layers,
        "oracle_mode": oracle_mode,
        "n_found": len(det.glitch_ids),
        "n_sampled": int(tab.in_sample.sum()),
        "n_predicted": int(tab.predicted.sum()),
        "time_pipeline_s": time_pipeline,
        **{f"time_{k}_s": float(v) for k, v in timings.items()},
    }

    if truth is None:
        summary.update(n_glitch_ground_truth=None, precision=1.0, recall=None, f1=None, time_exhaustive_s=None)
        run.note(f"no stored ground truth for {model.spec}: recall and baselines are not measured")
        return summary

    true_glitch = [int(t) for t in tab.token_id if gt_cls[int(t)] == "glitch"]
    is_glitch = np.array([gt_cls[int(t)] == "glitch" for t in tab.token_id])
    scores = precision_recall(det.glitch_ids, true_glitch)
    sampled = set(tab.loc[tab.in_sample, "token_id"])
    true_outside_sample = [t for t in true_glitch if t not in sampled]
    svm_scores = precision_recall(tab.loc[tab.predicted, "token_id"], true_outside_sample)
    summary.update(
        n_glitch_ground_truth=len(true_glitch),
        n_glitch_ground_truth_full_vocab=int((truth.cls == "glitch").sum()),
        glitch_prevalence=len(true_glitch) / n_cand,
        precision=scores["precision"], recall=scores["recall"], f1=scores["f1"],
        svm_precision_before_verification=svm_scores["precision"], svm_recall_outside_sample=svm_scores["recall"],
        time_exhaustive_s=time_exhaustive, time_exhaustive_full_vocab_s=float(n_judged_gt * per_token_s),
        stored_scan_wall_s=float(meta["wall_time_s"]),
        speed_ratio=time_pipeline / time_exhaustive,
        exhaustive_s_per_token=per_token_s,
        stored_scan_s_per_token=stored_per_token_s,
        **({"oracle_calibration_tokens": calib["n"], "oracle_agreement_with_stored": calib["agreement"]} if calib else {}),
    )

    # baselines -----------------------------------------------------------------------------------
    def magikarp_stage():
        import time

        t0 = time.perf_counter()
        found, mtab = magikarp_search(model, tab.token_id.tolist(), oracle_label, share=p["magikarp_share"], template=tpl)
        secs = time.perf_counter() - t0
        if oracle_mode == "stored":
            secs = float(mtab.verified.sum() * per_token_s)
        return found, mtab, secs

    mk_found, mk_tab, mk_secs = run.stage("magikarp", magikarp_stage, key=[len(vocab), oracle_mode])
    mk = precision_recall(mk_found, true_glitch)
    n_random = int(time_pipeline / per_token_s)
    cand_truth = truth[truth.token_id.isin(tab.token_id)]
    rnd = precision_recall(random_sampling(cand_truth, n_random, seed), true_glitch)
    summary.update(magikarp_recall=mk["recall"], magikarp_precision_before_verification=(mk["n_found"] / max(1, int(mk_tab.verified.sum()))),
                   magikarp_time_s=mk_secs, random_sampling_recall_same_time=rnd["recall"], random_sampling_calls=n_random)

    # the same detector on token statistics (no forward pass), trained on the same labelled sample;
    # its predictions are verified by the stored answers (time: calls x the oracle's time per token)
    samp_mask = tab.in_sample.to_numpy()
    st = run.stage("token_statistics", lambda: statistics_detector(
        model, tab.token_id.tolist(), samp_mask, (tab.oracle[samp_mask] == "glitch").to_numpy(), lookup,
        decision_threshold=float(p["decision_threshold"]), kernel=p["kernel"], degree=p["degree"], C=p["C"],
        class_weight=p["class_weight"] or None, seed=seed), key=[len(vocab), oracle_mode])
    st_scores = precision_recall(st["found"], true_glitch)
    st_secs = dict(st["seconds"])
    st_secs["labelling"] = timings["labelling"]
    st_secs["verification"] = float(st["predicted"].sum() * per_token_s)
    st_time = float(sum(st_secs.values()))
    summary.update(
        stats_recall=st_scores["recall"], stats_f1=st_scores["f1"],
        stats_svm_precision_before_verification=precision_recall(tab.token_id[st["predicted"]], true_outside_sample)["precision"],
        stats_n_predicted=int(st["predicted"].sum()), stats_time_s=st_time, stats_speed_ratio=st_time / time_exhaustive,
        stats_feature_time_s=float(st_secs["features"]),
    )

    # what reaching the target recall costs each detector (verifying its top-scored tokens in order)
    target = float(p["recall_target"])
    curves = []
    for key, method, score, stage_s in (("glitchprober", "GlitchProber (activations)", tab.score.to_numpy(), timings),
                                        ("stats", "token statistics + SVM", st["score"], st_secs)):
        fixed = float(sum(v for k, v in stage_s.items() if k not in ("labelling", "verification")))  # not oracle calls
        calls = calls_for_recall(samp_mask, score, is_glitch, target)
        summary[f"{key}_oracle_calls_for_recall_target"] = calls
        summary[f"{key}_speed_ratio_for_recall_target"] = (fixed + calls * per_token_s) / time_exhaustive if calls is not None else None
        curves.append(recall_cost_curve(samp_mask, score, is_glitch, fixed, per_token_s, time_exhaustive).assign(method=method))
    curves.append(pd.DataFrame({"n_verified": [0, n_cand], "recall": [0.0, 1.0], "seconds": [0.0, time_exhaustive],
                                "cost_ratio": [0.0, 1.0], "method": "uniform random sampling (expected)"}))
    curve = pd.concat(curves, ignore_index=True)
    summary.update(recall_target=target, speed_ratio_floor_for_recall_target=target * len(true_glitch) / n_cand)

    # how much of the verdict depends on the prompt's worked examples rather than on the token
    n_stab = int(p["quick_stability_tokens"] if quick else p["stability_tokens"])
    stab_ids = rng.choice(tab.token_id.to_numpy(), size=min(n_stab, n_cand), replace=False).tolist() if n_stab > 0 else []
    if stab_ids:
        stab = run.stage("oracle_stability", lambda: label_stability(
            model, stab_ids, oracle_label(stab_ids), _shot_sets(p["stability_shots"]), max_new_tokens=p["max_new_tokens"],
            batch_size=p["oracle_batch_size"]), key=[len(vocab), n_stab, str(p["stability_shots"]), oracle_mode])
        summary.update({f"stability_{k}": v for k, v in stability_summary(stab).items()})
        run.table("oracle_stability", stab.assign(token=stab.token_id.map(dict(zip(truth.token_id.astype(int), truth.token)))))

    sweep = run.stage("sweep", lambda: sample_ratio_sweep(
        det.projection, is_glitch, _ratios(p["sweep_ratios"]), kernel=p["kernel"], degree=p["degree"], C=p["C"],
        class_weight=p["class_weight"] or None, seed=seed), key=[len(vocab)])

    thr = threshold_sweep(tab, is_glitch, sorted(float(x) for x in str(p["threshold_sweep"]).split(",") if x.strip()))

    # repair --------------------------------------------------------------------------------------
    rep = run.stage("repair", lambda: _repair(model, tpl, det, gt_cls, p, quick, seed), key=[len(vocab), quick])
    summary.update({k: v for k, v in rep.items() if not isinstance(v, pd.DataFrame)})

    # tables --------------------------------------------------------------------------------------
    text = dict(zip(truth.token_id.astype(int), truth.token))
    gen = dict(zip(truth.token_id.astype(int), truth.generated))
    out = tab.assign(token=tab.token_id.map(text), ground_truth=tab.token_id.map(gt_cls))
    out = out.merge(mk_tab[["token_id", "indicator"]].rename(columns={"indicator": "magikarp_indicator"}), on="token_id", how="left")
    glitch_table = out[out.ground_truth == "glitch"].assign(generated=lambda d: d.token_id.map(gen))
    glitch_table = glitch_table[["token_id", "token", "generated", "in_sample", "score", "predicted", "glitch", "magikarp_indicator"]]
    run.table("glitch_tokens", glitch_table.rename(columns={"glitch": "found", "score": "svm_score"}))
    run.table("detection", out)
    run.table("excluded_tokens", det.excluded.assign(token=det.excluded.token_id.map(text)))
    dist = det.distances.copy()
    dist["key_layer"] = dist.layer.isin(det.key_layers)
    run.table("layer_distances", dist)
    run.table("sample_ratio_sweep", sweep)
    run.table("threshold_sweep", thr)
    methods = pd.DataFrame(
        [{"method": "exhaustive search", "stage": "oracle", "seconds": time_exhaustive, "recall": 1.0}]
        + [{"method": "GlitchProber", "stage": k, "seconds": v, "recall": scores["recall"]} for k, v in timings.items()]
        + [{"method": f"Magikarp (lowest {p['magikarp_share']:.0%})", "stage": "verification", "seconds": mk_secs, "recall": mk["recall"]},
           {"method": "random sampling (same time)", "stage": "oracle", "seconds": n_random * per_token_s, "recall": rnd["recall"]}]
        + [{"method": "token statistics + SVM", "stage": k, "seconds": v, "recall": st_scores["recall"]} for k, v in st_secs.items()]
    )
    run.table("method_times", methods)
    run.table("repair", rep["table"])
    run.table("recall_cost_curve", curve)

    # figures -------------------------------------------------------------------------------------
    name = model.spec
    if len(det.distances):
        run.figure("layer_distances", figures.layer_distance_figure(det.distances, det.key_layers, name))
    pts = pd.DataFrame({"pc1": det.projection[:, 0], "pc2": det.projection[:, 1],
                        "label": np.where(is_glitch, "glitch", "normal")})
    run.figure("pca_scatter", figures.pca_scatter_figure(pts, name))
    if len(sweep):
        run.figure("sample_ratio", figures.sample_ratio_figure(sweep, name))
    run.figure("method_times", figures.method_time_figure(methods, name))
    run.figure("recall_cost", figures.recall_cost_figure(curve, target, 0.15, summary["speed_ratio_floor_for_recall_target"], name))
    return summary


def _repair(model: Model, tpl, det: Detection, gt_cls: dict[int, str], p: dict[str, Any], quick: bool, seed: int) -> dict[str, Any]:
    """Fit the key neurons on the labelled sample and measure repair and damage by generating."""
    rng = np.random.default_rng(seed + 1)
    tab = det.table
    sample = tab[tab.in_sample]
    fit_normal = sample.loc[sample.oracle == "normal", "token_id"].to_numpy()
    fit_glitch = sample.loc[sample.oracle == "glitch", "token_id"].to_numpy()
    if len(fit_normal) > p["repair_fit_normal"]:
        fit_normal = rng.choice(fit_normal, size=int(p["repair_fit_normal"]), replace=False)
    if not len(fit_normal) or not len(fit_glitch):
        raise InterpError("repair needs normal and glitch tokens in the labelled sample")
    layers = det.key_layers
    an = neuron_activations(model, fit_normal.tolist(), layers, template=tpl, batch_size=p["oracle_batch_size"])
    ag = neuron_activations(model, fit_glitch.tolist(), layers, template=tpl, batch_size=p["oracle_batch_size"])
    plan = key_neurons(an, ag, threshold=p["repair_threshold"], always_share=p["always_share"])
    rule = plan.rule_based(alpha=p["rule_alpha"], beta=p["rule_beta"])

    n_g = int(p["quick_repair_glitch"] if quick else p["n_repair_glitch"])
    n_n = int(p["quick_repair_normal"] if quick else p["n_repair_normal"])
    rest = tab[~tab.in_sample]
    eval_glitch = rest.loc[rest.glitch, "token_id"].to_numpy()
    eval_normal = rest.loc[rest.token_id.map(gt_cls) == "normal", "token_id"].to_numpy()
    eval_glitch = rng.choice(eval_glitch, size=min(n_g, len(eval_glitch)), replace=False) if len(eval_glitch) else eval_glitch
    eval_normal = rng.choice(eval_normal, size=min(n_n, len(eval_normal)), replace=False)
    ids = [int(t) for t in np.concatenate([eval_glitch, eval_normal])]
    kind = np.array(["glitch"] * len(eval_glitch) + ["normal"] * len(eval_normal))

    def oracle(hooks):
        with model.hooks(hooks):
            return repeat_oracle(model, ids, max_new_tokens=p["max_new_tokens"], batch_size=p["oracle_batch_size"],
                                 template=tpl).table

    control = oracle([])
    adaptive = oracle(repair_hooks(model, plan))
    fixed = oracle(repair_hooks(model, rule))
    table = pd.DataFrame({"token_id": ids, "group": kind, "control": control.cls, "repaired": adaptive.cls,
                          "rule_based": fixed.cls, "control_reply": control.generated,
                          "repaired_reply": adaptive.generated, "rule_based_reply": fixed.generated})
    g, n = table[table.group == "glitch"], table[(table.group == "normal") & (table.control == "normal")]

    def rate(df: pd.DataFrame, col: str, cls: str) -> Optional[float]:
        return float((df[col] == cls).mean()) if len(df) else None

    return {
        "table": table,
        "repair_rate": rate(g, "repaired", "normal"),
        "repair_rule_based_rate": rate(g, "rule_based", "normal"),
        "repair_control_rate": rate(g, "control", "normal"),
        "normal_damage_rate": rate(n, "repaired", "glitch"),
        "normal_damage_rule_based_rate": rate(n, "rule_based", "glitch"),
        "n_repair_glitch": int(len(g)),
        "n_repair_normal": int(len(n)),
        "n_always_active_neurons": plan.n_always,
        "n_never_active_neurons": plan.n_never,
    }
