"""``interp run glitch``: GlitchProber glitch-token detection and repair, with baselines, step by step.

The file reads as the paper's steps, each a named function (the equation it computes is in the module
named beside it):

0. :func:`oracle_prompt_set`: the oracle prompts that vote (:mod:`~interp.glitch.consensus`); the
   first is the single-prompt label (the stored exhaustive scan's prompt);
1. :func:`choose_vocabulary`: all of it, or a random share with ``--quick``;
2. GlitchProber (:func:`~interp.glitch.detect.glitch_prober`): label a random sample with the oracle,
   choose key layers by Wasserstein distance (:mod:`~interp.glitch.distance`), features
   (:mod:`~interp.glitch.features`), PCA + SVM, verify the predicted tokens;
3. :func:`consensus_detector`: the same SVM on the consensus label of the same sample, verified by
   the consensus oracle (the all-prompts cascade);
   :func:`search_step`: the ranked search of :mod:`~interp.glitch.search` (token statistics rank, a
   cross-fitted cut-off stops, the consensus oracle verifies), on its own random sample;
4. scores against the single-prompt label and the consensus label on the evaluation set (every
   candidate outside the sample when the ground truth is stored, else a stated random share;
   :func:`estimated_recall`), and times against the exhaustive oracle of each label;
5. prompt agreement on a random share (every prompt asks every token);
6. baselines: Magikarp as its paper (:mod:`~interp.glitch.magikarp`), random sampling and token
   statistics (:mod:`~interp.glitch.baselines`, stored ground truth only);
7. :func:`repair_step`: the paper's repair (:mod:`~interp.glitch.repair`) beside the rewording control;
8. :func:`claims_table`: the paper's claims, measured.

With ``oracle="stored"`` (the ``--quick`` default where a ground truth is stored) the single prompt's
answers are looked up and priced at the oracle's time per call measured in this run; the other
prompts always run. The ranked search's budget counts forwarded tokens instead of seconds, so it
stops at the same candidate in every run (:func:`search_step`).
"""

from __future__ import annotations

import shutil
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.svm import SVC

from interp import distributed
from interp.errors import InterpError
from interp.glitch import figures
from interp.glitch.baselines import (
    calls_for_recall,
    found_in_verification_order,
    magikarp_search,
    random_sampling,
    statistics_detector,
    token_statistics,
)
from interp.glitch.consensus import (
    SINGLE_PROMPT,
    agreement_summary,
    consensus_labels,
    oracle_templates,
    prompt_follow_rate,
)
from interp.glitch.detect import Detection, glitch_prober, precision_recall
from interp.glitch.params import PARAMS
from interp.glitch.oracle import repeat_oracle, stability_summary
from interp.glitch.repair import key_neurons, neuron_activations, repair_hooks
from interp.glitch.scan import load_ground_truth
from interp.glitch.search import aim_sweep, ranked_search
from interp.model import Model

DESCRIPTION = "Glitch tokens (GlitchProber): repeat oracle, layer distances, PCA+SVM detector, key-neuron repair, baselines"

# the parameters are declared (type, range, default, unit, meaning) in interp/glitch/params.py
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




# ------------------------------------------------------------------------------------------------
# the oracle's verdicts, asked once per (prompt, token) and priced at the time measured in this run
# ------------------------------------------------------------------------------------------------


class Verdicts:
    """Every oracle verdict of the run, per prompt, with the oracle's measured seconds per call.

    Verdicts are deterministic (greedy), so a (prompt, token) pair is asked once and looked up after;
    every *use* of a verdict is priced at the prompt's seconds per call measured in this run (a
    stored verdict at the time of the calibration run on random candidates). Where a ground truth is
    stored, the single prompt's verdicts the run did not ask itself are looked up in it.
    """

    def __init__(self, model: Model, templates: dict[str, Any], p: dict[str, Any], stored: Optional[dict[int, str]] = None,
                 stored_s_per_call: float = float("nan")):
        self.model, self.templates, self.p = model, templates, p
        self.cache: dict[str, dict[int, str]] = {n: {} for n in templates}
        self.live_s: dict[str, float] = {n: 0.0 for n in templates}
        self.live_n: dict[str, int] = {n: 0 for n in templates}
        self.stored = stored
        self.stored_s = stored_s_per_call

    def ask(self, prompt: str, ids: Sequence[int]) -> list[str]:
        import time

        ids = [int(t) for t in ids]
        c = self.cache[prompt]
        if prompt == SINGLE_PROMPT and self.stored is not None:
            return [c.get(t, self.stored[t]) for t in ids]  # this run's own verdicts first, stored ones for the rest
        todo = sorted({t for t in ids if t not in c})
        if todo:
            t0 = time.perf_counter()
            res = repeat_oracle(self.model, todo, max_new_tokens=self.p["max_new_tokens"], batch_size=self.p["oracle_batch_size"],
                                template=self.templates[prompt], progress=False).table
            self.live_s[prompt] += time.perf_counter() - t0
            self.live_n[prompt] += len(todo)
            c.update(zip(res.token_id.astype(int), res.cls))
        return [c[t] for t in ids]

    def s_per_call(self, prompt: str) -> float:
        if self.live_n[prompt]:
            return self.live_s[prompt] / self.live_n[prompt]
        return self.stored_s if prompt == SINGLE_PROMPT and self.stored is not None else float("nan")

    def cascade(self, ids: Sequence[int], prompts: Sequence[str]) -> tuple[pd.DataFrame, dict[str, int]]:
        """The ``all``-label cascade over ``prompts`` (see :mod:`interp.glitch.consensus`)."""
        ids = np.asarray([int(t) for t in ids], dtype=int)
        table = pd.DataFrame({"token_id": ids})
        ask = np.ones(len(ids), dtype=bool)
        calls = {}
        for name in prompts:
            col = np.full(len(ids), "", dtype=object)
            todo = np.flatnonzero(ask)
            if len(todo):
                col[todo] = self.ask(name, ids[todo])
            calls[name] = int(len(todo))
            table[name] = col
            ask &= col == "glitch"
        return pd.concat([table, consensus_labels(table, list(prompts))], axis=1), calls

    def rates(self, prompts: Sequence[str]) -> dict[str, float]:
        """Each prompt's seconds per call as measured so far (a price list to hold fixed)."""
        return {k: self.s_per_call(k) for k in prompts}


def priced(calls: dict[str, float], rates: dict[str, float]) -> float:
    """Seconds of ``calls`` (prompt -> number of calls) at ``rates`` (prompt -> seconds per call)."""
    return float(sum(n * rates[k] for k, n in calls.items()))


# ------------------------------------------------------------------------------------------------
# the paper's steps
# ------------------------------------------------------------------------------------------------


def oracle_prompt_set(model: Model, p: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], list[str]]:
    """The voting oracle prompts: every prompt of ``oracle_prompts`` that the model follows.

    Returns:
        ``(templates, follow rate per prompt, dropped prompts)``; the single-prompt label's prompt is
        always first and always kept.
    """
    names = [n.strip() for n in str(p["oracle_prompts"]).split(",") if n.strip()]
    if not names or names[0] != SINGLE_PROMPT:
        raise InterpError(f"oracle_prompts must start with {SINGLE_PROMPT!r} (the single-prompt label), not {names}")
    tpls = oracle_templates(model, names)
    follow = {n: prompt_follow_rate(model, t, max_new_tokens=p["max_new_tokens"]) for n, t in tpls.items()}
    dropped = [n for n in names[1:] if follow[n] < float(p["min_follow"])]
    return {n: t for n, t in tpls.items() if n not in dropped}, follow, dropped


def choose_vocabulary(model: Model, truth: Optional[pd.DataFrame], p: dict[str, Any], quick: bool, seed: int,
                      sampled: bool = False) -> np.ndarray:
    """The token ids searched: the whole vocabulary, or with ``--quick`` a random ``quick_vocab`` of it
    (``quick_vocab_unlabelled`` for a model without stored ground truth, whose oracle runs live).
    Where the stored ground truth covers a stated random sample of the vocabulary (``sampled``), that
    sample stands for the whole vocabulary and ``--quick`` draws from it."""
    if not quick:
        return truth.token_id.to_numpy().astype(int) if sampled and truth is not None else np.arange(model.d_vocab)
    rng = np.random.default_rng(seed)
    pool = truth.token_id.to_numpy() if truth is not None else np.arange(model.d_vocab)
    n = int(p["quick_vocab"] if truth is not None else p["quick_vocab_unlabelled"])
    return np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))


def consensus_detector(det: Detection, sample_consensus: np.ndarray, p: dict[str, Any], seed: int) -> dict[str, Any]:
    """GlitchProber's SVM trained on the consensus label of the same labelled sample.

    The sample's features at the key layers and their PCA are the main detection's (computed once);
    only the SVM is fitted again, on ``consensus_all`` instead of the single prompt's label.
    """
    import time

    tab = det.table
    samp = tab.in_sample.to_numpy()
    y = np.asarray(sample_consensus) == "glitch"
    score = np.full(len(tab), np.nan)
    t0 = time.perf_counter()
    if y.any() and not y.all():
        svm = SVC(kernel=p["kernel"], degree=p["degree"], C=p["C"], class_weight=p["class_weight"] or None, random_state=seed)
        svm.fit(det.projection[samp], y)
        score[~samp] = svm.decision_function(det.projection[~samp])
    secs = time.perf_counter() - t0
    predicted = ~samp & (np.nan_to_num(score, nan=-np.inf) > float(p["consensus_decision_threshold"]))
    return {"score": score, "predicted": predicted, "seconds": secs, "trained": bool(y.any() and not y.all())}


def estimated_recall(n_sample_glitch: int, eval_glitch: np.ndarray, eval_found: np.ndarray, n_outside: int) -> tuple[float, float]:
    """Recall over every candidate from the labelled sample and a random evaluation set outside it.

    ``recall = (G_s + r_e * G_out) / (G_s + G_out)`` with ``G_s`` the sample's glitch tokens (all
    found), ``r_e`` the share of the evaluation set's glitch tokens the method found and ``G_out``
    the glitch tokens outside the sample estimated from the evaluation set's prevalence. Exact when
    the evaluation set is everything outside the sample.

    Returns:
        ``(recall, estimated number of glitch tokens among the candidates)``.
    """
    n_eval = len(eval_glitch)
    g_out = float(np.sum(eval_glitch)) / n_eval * n_outside if n_eval else 0.0
    r_e = float(np.sum(eval_found & eval_glitch)) / max(1, int(np.sum(eval_glitch))) if np.sum(eval_glitch) else 0.0
    total = n_sample_glitch + g_out
    return ((n_sample_glitch + r_e * g_out) / total if total else float("nan")), total


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def run(model: Model, run: Any, quick: bool = False, **params: Any) -> dict[str, Any]:
    """Run the whole analysis into ``run`` and return the summary numbers (see module docstring)."""
    p = {**DEFAULTS, **params}
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise InterpError(f"unknown glitch parameter(s): {sorted(unknown)}")
    seed = int(getattr(run, "seed", 0) or 0)
    rng = np.random.default_rng(seed)

    # 0. the oracle prompts and the stored single-prompt ground truth ------------------------------
    templates, follow, dropped = run.stage("oracle_prompts", lambda: oracle_prompt_set(model, p), key=[p["oracle_prompts"]])
    prompts = list(templates)
    tpl = templates[SINGLE_PROMPT]
    for n in dropped:
        run.note(f"oracle prompt {n!r} left out of the consensus: the model repeats only {follow[n]:.0%} of common words "
                 f"with it (< {float(p['min_follow']):.0%})")
    try:
        truth, meta = load_ground_truth(model.spec, p["ground_truth_dir"] or None)
    except InterpError:
        if p["ground_truth_dir"]:  # a folder the user named must hold this model's ground truth
            raise
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
    run.note(f"oracle prompts (chat={tpl.chat}): {', '.join(prompts)}; single-prompt label: {SINGLE_PROMPT} "
             f"{tpl.text!r}; its answers: {oracle_mode}")
    gt_cls = dict(zip(truth.token_id.astype(int), truth.cls)) if truth is not None else {}
    drawn = (meta or {}).get("sample")
    if drawn:
        run.note(f"the stored ground truth covers a random sample of {drawn['n']:,} of the {drawn['of']:,} vocabulary ids "
                 f"(seed {drawn['seed']}): it stands for the whole vocabulary here")

    vocab = choose_vocabulary(model, truth, p, quick, seed, sampled=bool(drawn))
    kinds = [k.strip() for k in str(p["kinds"]).split(",") if k.strip()]

    def lookup(ids: list[int]) -> list[str]:
        return [gt_cls[int(t)] for t in ids]

    # 1-4. GlitchProber: label a sample, choose key layers, PCA + SVM, verify the predicted tokens ----
    det: Detection = run.stage("detection", lambda: glitch_prober(
        model, vocab.tolist(), sample_ratio=p["sample_ratio"], distance_sample=p["distance_sample"],
        n_key_layers=p["n_key_layers"] or None, key_layer_fraction=p["key_layer_fraction"], kinds=kinds,
        position=p["position"], n_components=p["n_components"], kernel=p["kernel"], degree=p["degree"], C=p["C"],
        class_weight=p["class_weight"] or None, decision_threshold=float(p["decision_threshold"]),
        max_new_tokens=p["max_new_tokens"],
        oracle_batch_size=p["oracle_batch_size"], feature_batch_size=p["feature_batch_size"], template=tpl,
        labeller=lookup if oracle_mode == "stored" else None, seed=seed,
        # under torchrun the features scan of the unsampled tokens is shared among the ranks
        shard_dir=run.dir / "shards" / "features" if distributed.current().size > 1 else None),
        key=[vocab.tolist()[:8], len(vocab), oracle_mode])
    shutil.rmtree(run.dir / "shards", ignore_errors=True)
    tab = det.table
    samp = tab.in_sample.to_numpy()
    cand = tab.token_id.to_numpy().astype(int)
    n_cand = len(cand)
    timings = dict(det.timings)
    calib: dict[str, Any] = {}
    if oracle_mode == "stored":
        # time the real oracle on random candidates on this machine, now, so every time below compares
        # like with like (and check the stored answers still reproduce)
        calib = run.stage("oracle_calibration", lambda: _calibrate_oracle(model, tpl, cand, gt_cls, p, seed),
                          key=[len(vocab), int(p["calibration_tokens"])])
        per_token_s = calib["s_per_token"]
        timings["labelling"] = float(samp.sum() * per_token_s)
        timings["verification"] = float(tab.predicted.sum() * per_token_s)
        run.note(f"single-prompt labelling and verification times are estimated: oracle calls x {per_token_s * 1e3:.1f} ms "
                 f"per token, timed on {calib['n']} random candidates in this run (they agree with the stored answers on "
                 f"{calib['agreement']:.1%})")
    else:
        per_token_s = timings["labelling"] / max(1, int(samp.sum()))
    # stored single-prompt verdicts label the evaluation set even when the pipeline's own oracle runs live
    verdicts = Verdicts(model, templates, p, stored=gt_cls or None, stored_s_per_call=per_token_s)
    # the detection's own verdicts (live in "run" mode) join the cache: the oracle is deterministic
    if oracle_mode == "run":
        asked = tab.oracle != ""
        verdicts.cache[SINGLE_PROMPT].update(zip(cand[asked.to_numpy()], tab.oracle[asked]))
        verdicts.live_s[SINGLE_PROMPT] = timings["labelling"] + timings["verification"]
        verdicts.live_n[SINGLE_PROMPT] = int(asked.sum())
    time_pipeline = float(sum(timings.values()))
    fixed_s = float(sum(v for k, v in timings.items() if k not in ("labelling", "verification")))

    summary: dict[str, Any] = {
        "vocab_size": int(model.d_vocab),
        "n_tokens_searched": int(len(vocab)),
        "n_candidates": n_cand,
        "n_excluded": {k: int(v) for k, v in det.excluded.cls.value_counts().items()},
        "key_layers": det.key_layers,
        "oracle_mode": oracle_mode,
        "oracle_prompts": prompts,
        "oracle_prompts_dropped": dropped,
        **{f"follow_rate_{k}": v for k, v in follow.items()},
        "n_found": len(det.glitch_ids),
        "n_sampled": int(samp.sum()),
        "n_predicted": int(tab.predicted.sum()),
        "time_pipeline_s": time_pipeline,
        **{f"time_{k}_s": float(v) for k, v in timings.items()},
    }

    # 5. the evaluation set: a stated random share of the candidates outside the sample (every one of
    #    them in a full run with a stored ground truth), labelled by the consensus cascade
    outside = np.flatnonzero(~samp)
    stored_truth = truth is not None and oracle_mode == "stored"
    if quick:
        n_eval = int(p["quick_eval_tokens"] if truth is not None else p["quick_eval_tokens_unlabelled"])
    else:
        n_eval = 0 if truth is not None else int(p["eval_tokens"])
    if n_eval <= 0 or n_eval >= len(outside):
        eval_pos = outside
    else:
        eval_pos = np.sort(rng.choice(outside, size=n_eval, replace=False))
    eval_is_all = len(eval_pos) == len(outside)
    # the single-prompt label is known on every candidate where the ground truth is stored
    single_pos = outside if stored_truth else eval_pos
    run.note(f"evaluation set: {'every candidate outside the labelled sample' if eval_is_all else f'{len(eval_pos)} random candidates outside the labelled sample (seed {seed})'}"
             f" ({len(eval_pos)} of {n_cand}), labelled by the consensus cascade; single-prompt scores on "
             f"{len(single_pos)} candidates outside the sample")

    cons = consensus_step(verdicts, prompts, cand, samp, eval_pos, det, p, seed, fixed_s)
    single_eval = np.array(verdicts.ask(SINGLE_PROMPT, cand[single_pos])) == "glitch"
    found_single = tab.glitch.to_numpy()
    n_s_single = int((samp & found_single).sum())
    rec, n_g = estimated_recall(n_s_single, single_eval, found_single[single_pos], len(outside))
    svm_pred = tab.predicted.to_numpy()
    prec_svm = float((single_eval & svm_pred[single_pos]).sum() / max(1, svm_pred[single_pos].sum()))
    summary.update(
        n_eval=int(len(eval_pos)), eval_is_all_outside_sample=eval_is_all, n_eval_single_prompt=int(len(single_pos)),
        n_glitch_ground_truth=int(round(n_g)), glitch_prevalence=n_g / n_cand,
        precision=1.0, recall=rec, f1=_f1(1.0, rec), svm_precision_before_verification=prec_svm,
        svm_recall_outside_sample=float((single_eval & svm_pred[single_pos]).sum() / max(1, single_eval.sum())),
        exhaustive_s_per_token=per_token_s, time_exhaustive_s=float(n_cand * per_token_s), speed_ratio=time_pipeline / (n_cand * per_token_s),
        **({"oracle_calibration_tokens": calib["n"], "oracle_agreement_with_stored": calib["agreement"]} if calib else {}),
    )
    if truth is not None:
        n_judged_gt = int(truth.cls.isin(["glitch", "normal"]).sum())
        stored_glitch = int((truth.cls == "glitch").sum())
        summary.update(stored_scan_wall_s=float(meta["wall_time_s"]), stored_scan_s_per_token=float(meta["wall_time_s"]) / max(1, n_judged_gt))
        if drawn:
            summary.update(vocab_sample_n=int(drawn["n"]), vocab_sample_seed=int(drawn["seed"]),
                           n_glitch_ground_truth_stored_sample=stored_glitch,
                           time_exhaustive_stored_sample_s=float(n_judged_gt * per_token_s))
        else:
            summary.update(n_glitch_ground_truth_full_vocab=stored_glitch, time_exhaustive_full_vocab_s=float(n_judged_gt * per_token_s))
    if truth is None or drawn:
        summary.update(projected_full_scan_s=float(model.d_vocab * (1 - len(det.excluded) / max(1, len(vocab))) * per_token_s))
        what = "recall is estimated on the stated evaluation set" if truth is None else "every number is over the sample searched"
        run.note(f"{'no stored ground truth' if truth is None else 'a sampled ground truth'} for {model.spec}: {what}; projected "
                 f"exhaustive single-prompt scan of the whole vocabulary: {summary['projected_full_scan_s'] / 3600:.1f} h")

    # 6. the same detector against the consensus label ---------------------------------------------
    summary.update(cons["summary"])
    summary["time_ratio_consensus"] = (fixed_s + cons["pipeline_oracle_s"] + cons["svm_s"]) / cons["exhaustive_s"]
    cons_eval = cons["eval"].consensus_all.to_numpy() == "glitch"
    summary["single_pipeline_recall_consensus"] = estimated_recall(
        cons["n_sample_glitch"], cons_eval, found_single[eval_pos], len(outside))[0]
    search_ratio = float(p["quick_search_sample_ratio"] if quick else p["search_sample_ratio"])
    srch = run.stage("ranked_search", lambda: search_step(model, verdicts, prompts, cand, samp, eval_pos, cons,
                                                          {**p, "search_sample_ratio": search_ratio}, seed, single_pos),
                     key=[len(vocab), search_ratio, p["search_aim"], p["search_C"], p["search_budget"], ",".join(prompts)])
    summary.update(srch["summary"])

    # agreement of the prompts on a random share of the candidates (every prompt asks every token)
    n_agree = int(p["quick_agreement_tokens"] if quick else p["agreement_tokens"])
    agree_ids = rng.choice(cand, size=min(n_agree, n_cand), replace=False).tolist() if n_agree > 0 else []
    if agree_ids and len(prompts) > 1:
        full = pd.DataFrame({"token_id": agree_ids, **{n: verdicts.ask(n, agree_ids) for n in prompts}})
        full = pd.concat([full, consensus_labels(full, prompts)], axis=1)
        summary.update({f"agreement_{k}" if not k.startswith(("prevalence", "agreement")) else k: v
                        for k, v in agreement_summary(full, prompts).items()})
        stab = full.rename(columns={SINGLE_PROMPT: "reference"})
        stab = stab.rename(columns={n: f"shots_{i}" for i, n in enumerate(prompts[1:])})
        summary.update({f"stability_{k}": v for k, v in stability_summary(stab).items()})
        run.table("oracle_verdicts", full.assign(token=[repr(model.tokenizer.decode([t])) for t in full.token_id]))

    # baselines ------------------------------------------------------------------------------------
    mk_share = float(p["quick_magikarp_share"] if quick else p["magikarp_share"])
    mk_found, mk_tab, mk_info = run.stage("magikarp", lambda: magikarp_search(
        model, cand.tolist(), share=mk_share, template=tpl), key=[len(vocab), mk_share])
    mk_set = set(mk_found)
    mk_single = np.array(verdicts.ask(SINGLE_PROMPT, mk_found)) == "glitch" if mk_found else np.array([], bool)
    mk_cons = verdicts.cascade(mk_found, prompts)[0].consensus_all.to_numpy() == "glitch" if mk_found else np.array([], bool)
    samp_single = np.array(verdicts.ask(SINGLE_PROMPT, cand[samp])) == "glitch"
    summary.update(
        magikarp_reference=mk_info["reference"], magikarp_n_reference=mk_info["n_reference"], magikarp_indicator=mk_info["indicator"],
        magikarp_n_checked=mk_info["n_checked"], magikarp_n_verified=len(mk_found),
        magikarp_precision=float(mk_single.mean()) if len(mk_single) else None,
        magikarp_precision_consensus=float(mk_cons.mean()) if len(mk_cons) else None,
        magikarp_recall=_magikarp_recall(mk_set, cand, samp, samp_single, single_pos, single_eval, len(outside)),
        magikarp_recall_consensus=_magikarp_recall(mk_set, cand, samp, cons["sample"].consensus_all.to_numpy() == "glitch",
                                                   eval_pos, cons_eval, len(outside)),
        magikarp_time_s=float(mk_info["seconds_indicator"] + mk_info["seconds_verification"]),
    )

    curve = None
    if truth is not None and oracle_mode == "stored":
        curve = _stored_truth_baselines(model, run, det, truth, gt_cls, lookup, timings, per_token_s, time_pipeline, p, seed, summary)

    # 7. repair -------------------------------------------------------------------------------------
    rep = run.stage("repair", lambda: repair_step(model, templates, det, verdicts, single_pos, p, quick, seed),
                    key=[len(vocab), quick, ",".join(prompts)])
    summary.update({k: v for k, v in rep.items() if not isinstance(v, pd.DataFrame)})

    # tables ----------------------------------------------------------------------------------------
    text = {int(t): repr(model.tokenizer.decode([int(t)])) for t in cand}
    det_out = tab.assign(token=tab.token_id.map(text), consensus_score=cons["score"], consensus_predicted=cons["predicted"],
                         consensus_found=cons["found"])
    det_out = det_out.merge(mk_tab[["token_id", "indicator", "max_prob", "verified"]].rename(
        columns={"indicator": "magikarp_indicator", "max_prob": "magikarp_max_prob", "verified": "magikarp_verified"}),
        on="token_id", how="left")
    run.table("detection", det_out)
    run.table("consensus_threshold_sweep", cons["sweep"])
    run.table("search_aim_sweep", srch["sweep"])
    run.table("search", srch["table"].assign(token=srch["table"].token_id.map(text)))
    run.table("consensus_eval", cons["eval"].assign(token=cons["eval"].token_id.map(text)))
    run.table("excluded_tokens", det.excluded.assign(token=det.excluded.token_id.map(lambda t: repr(model.tokenizer.decode([int(t)])))))
    dist = det.distances.copy()
    dist["key_layer"] = dist.layer.isin(det.key_layers)
    run.table("layer_distances", dist)
    run.table("repair", rep["table"])
    run.table("claims", claims_table(summary))

    # figures ---------------------------------------------------------------------------------------
    name = model.spec
    if len(det.distances):
        run.figure("layer_distances", figures.layer_distance_figure(det.distances, det.key_layers, name))
    if curve is not None:
        is_glitch = np.array([gt_cls[int(t)] == "glitch" for t in cand])
        pts = pd.DataFrame({"pc1": det.projection[:, 0], "pc2": det.projection[:, 1], "label": np.where(is_glitch, "glitch", "normal")})
        run.figure("pca_scatter", figures.pca_scatter_figure(pts, name))
        run.figure("recall_cost", figures.recall_cost_figure(curve, float(p["recall_target"]),
                                                             summary["speed_ratio_floor_for_recall_target"], name))
    return summary


def _magikarp_recall(found: set, cand: np.ndarray, samp: np.ndarray, samp_glitch: np.ndarray, eval_pos: np.ndarray,
                     eval_glitch: np.ndarray, n_outside: int) -> Optional[float]:
    """Share of the glitch tokens (sample + estimated outside) that Magikarp verified."""
    in_found_s = np.array([t in found for t in cand[samp]])
    in_found_e = np.array([t in found for t in cand[eval_pos]])
    g_s = int(samp_glitch.sum())
    g_out = float(eval_glitch.sum()) / max(1, len(eval_pos)) * n_outside
    hit = int((in_found_s & samp_glitch).sum()) + float((in_found_e & eval_glitch).sum()) / max(1, int(eval_glitch.sum())) * g_out
    total = g_s + g_out
    return float(hit / total) if total else None


def consensus_step(verdicts: Verdicts, prompts: list[str], cand: np.ndarray, samp: np.ndarray, eval_pos: np.ndarray,
                   det: Detection, p: dict[str, Any], seed: int, fixed_s: float) -> dict[str, Any]:
    """Consensus labels of the sample and the evaluation set, the consensus detector, and its cost.

    The exhaustive consensus oracle is the all-prompts cascade over every candidate; its calls per
    prompt are estimated from the sample and the evaluation set (both random) and priced at each
    prompt's seconds per call measured in this run. The pipeline's consensus cost is the cascade on
    the sample (training labels) plus the cascade on the predicted tokens (verification).
    """
    sample_tab, sample_calls = verdicts.cascade(cand[samp], prompts)
    cd = consensus_detector(det, sample_tab.consensus_all.to_numpy(), p, seed)
    pred_pos = np.flatnonzero(cd["predicted"])
    pred_tab, pred_calls = verdicts.cascade(cand[pred_pos], prompts)
    eval_tab, eval_calls = verdicts.cascade(cand[eval_pos], prompts)
    found = np.zeros(len(cand), dtype=bool)
    found[np.flatnonzero(samp)] = sample_tab.consensus_all.to_numpy() == "glitch"
    found[pred_pos] = pred_tab.consensus_all.to_numpy() == "glitch"
    # how many calls the cascade makes per candidate, from the sample and the evaluation set (both random)
    n_rand = int(samp.sum()) + len(eval_pos)
    exhaustive_calls = {k: (sample_calls[k] + eval_calls[k]) / n_rand * len(cand) for k in prompts}
    # one price list for every consensus cost: this detector, the exhaustive oracle and the ranked search
    # (whose own live calls, in a run without every verdict asked here, would otherwise move the prices
    # of its numerator away from its denominator's)
    rates = verdicts.rates(prompts)
    exhaustive_s = priced(exhaustive_calls, rates)
    oracle_s = priced(sample_calls, rates) + priced(pred_calls, rates)
    eval_glitch = eval_tab.consensus_all.to_numpy() == "glitch"
    n_s = int((sample_tab.consensus_all == "glitch").sum())
    rec, n_g = estimated_recall(n_s, eval_glitch, cd["predicted"][eval_pos] & found[eval_pos], int((~samp).sum()))
    summary = {
        "n_glitch_consensus": int(round(n_g)), "glitch_prevalence_consensus": n_g / len(cand),
        "precision_consensus": 1.0, "recall_consensus": rec, "f1_consensus": _f1(1.0, rec),
        "consensus_n_predicted": int(len(pred_pos)), "consensus_detector_trained": cd["trained"],
        "consensus_svm_precision_before_verification": float((pred_tab.consensus_all == "glitch").mean()) if len(pred_pos) else None,
        "time_consensus_exhaustive_s": exhaustive_s, "time_pipeline_consensus_oracle_s": oracle_s,
        "consensus_exhaustive_calls_per_token": float(sum(exhaustive_calls.values()) / len(cand)),
        **{f"consensus_s_per_call_{k}": rates[k] for k in prompts},
    }
    sweep = consensus_threshold_sweep(cd["score"], samp, eval_pos, eval_tab, prompts, rates, fixed_s + cd["seconds"]
                                      + priced(sample_calls, rates), exhaustive_s, n_s,
                                      sorted(float(x) for x in str(p["consensus_threshold_sweep"]).split(",") if x.strip()))
    reach = sweep[sweep.recall >= float(p["recall_target"])]
    summary["consensus_time_ratio_for_recall_target"] = float(reach.time_ratio.min()) if len(reach) else None
    summary["consensus_threshold_for_recall_target"] = float(reach.threshold.iloc[reach.time_ratio.argmin()]) if len(reach) else None
    return {"summary": summary, "sample": sample_tab, "eval": eval_tab, "score": cd["score"], "predicted": cd["predicted"], "sweep": sweep,
            "found": found, "svm_s": cd["seconds"], "pipeline_oracle_s": oracle_s, "exhaustive_s": exhaustive_s,
            "n_sample_glitch": n_s, "rates": rates, "exhaustive_calls": exhaustive_calls}


def search_step(model: Model, verdicts: Verdicts, prompts: list[str], cand: np.ndarray, samp: np.ndarray,
                eval_pos: np.ndarray, cons: dict[str, Any], p: dict[str, Any], seed: int,
                single_pos: Optional[np.ndarray] = None) -> dict[str, Any]:
    """The ranked search (:mod:`interp.glitch.search`) against the consensus label, scored and priced;
    beside it the same search against the single-prompt label (``search_*_single``).

    Its random sample (``search_sample_ratio``) and its verifications are asked with the consensus
    cascade. Its budget is in forwarded tokens: each use of a verdict costs its prompt's
    :meth:`~interp.glitch.oracle.RepeatTemplate.tokens_per_call` and the token statistics nothing, so
    the search stops at the same candidate on every machine and in every run (``search_cost_*``). Its
    time is reported beside, every use of a verdict priced at the prompt's seconds per call of this run
    as the consensus detector and the exhaustive oracle are (``cons["rates"]``: the search's own live
    calls do not re-price it), and the features and the fit at their wall time. Recall is counted on the tokens
    whose consensus label this run knows (GlitchProber's sample and the evaluation set), weighting
    the evaluation set by the share of the candidates outside the sample it stands for: exact when
    the evaluation set is every other candidate.
    """
    import time

    t0 = time.perf_counter()
    X = token_statistics(model, cand).to_numpy()
    feature_s = time.perf_counter() - t0
    asked: list[dict[str, int]] = []
    tokens: dict[int, float] = {}
    rates = cons["rates"]
    tok = {k: float(verdicts.templates[k].tokens_per_call(int(p["max_new_tokens"]))) for k in prompts}

    def label(pos: np.ndarray) -> np.ndarray:
        tab, calls = verdicts.cascade(cand[pos], prompts)
        asked.append(calls)
        each = sum(np.where(tab[k].astype(str).to_numpy() != "", tok[k], 0.0) for k in prompts)
        tokens.update(zip(np.asarray(pos).tolist(), np.asarray(each, dtype=float).tolist()))
        return tab.consensus_all.to_numpy() == "glitch"

    rs = ranked_search(X, label, sample_ratio=float(p["search_sample_ratio"]), aim=float(p["search_aim"]),
                       C=float(p["search_C"]), seed=seed, feature_seconds=feature_s, budget=_budget(p),
                       cost=lambda pos: np.array([tokens[int(i)] for i in pos]), overhead=0.0)
    sample_calls = asked[0]
    verify_calls = {k: sum(a[k] for a in asked[1:]) for k in prompts}
    fixed_s = float(sum(rs.seconds.values())) + priced(sample_calls, rates)
    exhaustive_s = cons["exhaustive_s"]
    exhaustive_tok = priced(cons["exhaustive_calls"], tok)
    sample_tok = priced(sample_calls, tok)
    # the tokens whose consensus label is known, with the weight each stands for
    known, w = _known_weights(samp, eval_pos)
    known_tab = pd.concat([cons["sample"], cons["eval"]], ignore_index=True)
    g = known_tab.consensus_all.to_numpy() == "glitch"
    k_asked = {k: known_tab[k].astype(str).to_numpy() != "" for k in prompts}
    in_s = rs.in_sample[known]
    rec = _weighted_recall(w, g, rs.found[known])  # found: the sample's glitch tokens and the verified ones
    time_s = fixed_s + priced(verify_calls, rates)
    rows = []
    aims = sorted({float(x) for x in str(p["search_aim_sweep"]).split(",") if x.strip()} | {float(p["search_aim"])})
    for aim, cut, pred in aim_sweep(rs, aims):
        pk = pred[known]
        r = _weighted_recall(w, g, in_s | pk)
        calls = {k: float((w * (k_asked[k] & pk)).sum()) for k in prompts}
        rows.append({"aim": aim, "cutoff": cut, "verified_share": float(pred.mean()), "recall": r, "f1": _f1(1.0, r),
                     "cost_ratio": (sample_tok + priced(calls, tok)) / exhaustive_tok,
                     "time_ratio": (fixed_s + priced(calls, rates)) / exhaustive_s})
    sweep = pd.DataFrame(rows, columns=["aim", "cutoff", "verified_share", "recall", "f1", "cost_ratio", "time_ratio"])
    reach = sweep[sweep.recall >= float(p["recall_target"])]
    cost_tok = sample_tok + priced(verify_calls, tok)
    summary = {
        "search_sample_ratio": float(p["search_sample_ratio"]), "search_aim": rs.aim, "search_trained": rs.trained,
        "search_cutoff": rs.cutoff if rs.trained else None,
        "search_n_sampled": int(rs.in_sample.sum()), "search_n_sample_glitch": int(rs.sample_glitch.sum()),
        "search_n_verified": int(rs.predicted.sum()), "search_n_found": int(rs.found.sum()),
        "search_precision_consensus": 1.0, "search_recall_consensus": rec, "search_f1_consensus": _f1(1.0, rec),
        "search_time_s": time_s, "search_time_ratio_consensus": time_s / exhaustive_s,
        "search_feature_time_s": feature_s, "search_fit_time_s": float(rs.seconds["training"] + rs.seconds["prediction"]),
        "search_oracle_time_s": priced(sample_calls, rates) + priced(verify_calls, rates),
        "search_time_ratio_for_recall_target": float(reach.time_ratio.min()) if len(reach) else None,
        # the same search priced in forwarded tokens: what its budget counts, the same in every run
        "search_cost_tokens": cost_tok, "search_cost_ratio_consensus": cost_tok / exhaustive_tok,
        "search_cost_ratio_for_recall_target": float(reach.cost_ratio.min()) if len(reach) else None,
        "consensus_exhaustive_tokens": exhaustive_tok,
        **{f"search_tokens_per_call_{k}": tok[k] for k in prompts},
        "search_budget": rs.budget, "search_stopped_by": rs.stopped_by,
        "search_estimated_exhaustive_tokens": rs.estimated_exhaustive,
        # what the search counted against its budget (equal to search_cost_tokens)
        "search_budget_spent_tokens": rs.oracle_cost + rs.overhead,
    }
    table = pd.DataFrame({"token_id": cand, "in_sample": rs.in_sample, "score": rs.score, "crossfit_score": rs.crossfit,
                          "verified": rs.predicted, "found": rs.found})
    if single_pos is not None:
        summary.update(_search_single(verdicts, cand, samp, np.asarray(single_pos), X, feature_s, p, seed))
    return {"summary": summary, "sweep": sweep, "table": table}


def _search_single(verdicts: Verdicts, cand: np.ndarray, samp: np.ndarray, single_pos: np.ndarray, X: np.ndarray,
                   feature_s: float, p: dict[str, Any], seed: int) -> dict[str, Any]:
    """The ranked search with the single prompt as its oracle, scored against the single-prompt label.

    Same sample draw, features and aim as the consensus search; its budget counts the single prompt's
    forwarded tokens per call (every call costs the same, so it caps the calls at ``search_budget`` of
    the candidates), its time prices the calls at that prompt's seconds per call and the features and
    fit at their wall time, compared with that prompt on every candidate. Recall is counted on
    GlitchProber's sample and ``single_pos`` (weighted by the share of the outside it stands for).
    """
    def label(pos: np.ndarray) -> np.ndarray:
        return np.array(verdicts.ask(SINGLE_PROMPT, cand[pos])) == "glitch"

    per_call = verdicts.s_per_call(SINGLE_PROMPT)
    tok = float(verdicts.templates[SINGLE_PROMPT].tokens_per_call(int(p["max_new_tokens"])))
    rs = ranked_search(X, label, sample_ratio=float(p["search_sample_ratio"]), aim=float(p["search_aim"]),
                       C=float(p["search_C"]), seed=seed, feature_seconds=feature_s, budget=_budget(p),
                       cost=lambda pos: np.full(len(pos), tok), overhead=0.0)
    n_calls = int(rs.in_sample.sum() + rs.predicted.sum())
    time_s = float(sum(rs.seconds.values())) + n_calls * per_call
    known, w = _known_weights(samp, single_pos)
    rec = _weighted_recall(w, label(known), rs.found[known])
    return {"search_recall_single": rec, "search_f1_single": _f1(1.0, rec), "search_n_verified_single": int(rs.predicted.sum()),
            "search_time_ratio_single": time_s / (len(cand) * per_call), "search_cost_ratio_single": n_calls / len(cand)}


def _budget(p: dict[str, Any]) -> Optional[float]:
    """The ranked search's budget, a share of the exhaustive oracle's forwarded tokens (``search_budget``; None or 0: none)."""
    b = p.get("search_budget")
    return float(b) if b else None


def _known_weights(samp: np.ndarray, outside_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GlitchProber's sample (weight 1 each) and random positions outside it, each weighted by the share
    of the candidates outside the sample it stands for: ``(positions, weights)``."""
    n_out = int((~samp).sum())
    known = np.concatenate([np.flatnonzero(samp), outside_pos])
    w = np.concatenate([np.ones(int(samp.sum())), np.full(len(outside_pos), n_out / max(1, len(outside_pos)))])
    return known, w


def _weighted_recall(w: np.ndarray, glitch: np.ndarray, found: np.ndarray) -> float:
    """Share of the (weighted) glitch tokens that are found; NaN without glitch tokens."""
    total = float((w * glitch).sum())
    return float((w * (glitch & found)).sum()) / total if total else float("nan")


def consensus_threshold_sweep(score: np.ndarray, samp: np.ndarray, eval_pos: np.ndarray, eval_tab: pd.DataFrame,
                              prompts: Sequence[str], rates: dict[str, float], fixed_s: float, exhaustive_s: float,
                              n_sample_glitch: int, thresholds: Sequence[float]) -> pd.DataFrame:
    """Recall and cost of the consensus detector at other SVM decision thresholds, from the evaluation set.

    At threshold ``t`` the tokens outside the sample with a score above ``t`` are verified by the
    cascade. The evaluation set's tokens above ``t`` say how many consensus glitch tokens that finds
    (:func:`estimated_recall`) and how many calls of each prompt the cascade makes on them (scaled to
    every candidate outside the sample); the calls are priced at ``rates`` (seconds per call of this run).

    Returns:
        Columns ``threshold, predicted_share, recall, f1, time_ratio`` (``f1`` at precision 1).
    """
    n_out = int((~samp).sum())
    sc = score[eval_pos]
    glitch = eval_tab.consensus_all.to_numpy() == "glitch"
    asked = {k: eval_tab[k].astype(str).to_numpy() != "" for k in prompts}
    rows = []
    for t in thresholds:
        pred = np.nan_to_num(sc, nan=-np.inf) > t
        rec = estimated_recall(n_sample_glitch, glitch, pred, n_out)[0]
        calls = {k: float((asked[k] & pred).sum()) / max(1, len(eval_pos)) * n_out for k in prompts}
        ratio = (fixed_s + priced(calls, rates)) / exhaustive_s
        rows.append({"threshold": t, "predicted_share": float(pred.mean()), "recall": rec, "f1": _f1(1.0, rec), "time_ratio": ratio})
    return pd.DataFrame(rows)


def _stored_truth_baselines(model, run, det, truth, gt_cls, lookup, timings, per_token_s, time_pipeline, p, seed, summary):
    """Baselines that need every candidate's stored label: random sampling, token statistics, the
    oracle calls each detector needs for the target recall, and the labelled-share sweeps."""
    tab = det.table
    n_cand = len(tab)
    time_exhaustive = float(n_cand * per_token_s)
    true_glitch = [int(t) for t in tab.token_id if gt_cls[int(t)] == "glitch"]
    is_glitch = np.array([gt_cls[int(t)] == "glitch" for t in tab.token_id])
    n_random = int(time_pipeline / per_token_s)
    cand_truth = truth[truth.token_id.isin(tab.token_id)]
    rnd = precision_recall(random_sampling(cand_truth, n_random, seed), true_glitch)
    summary.update(random_sampling_recall_same_time=rnd["recall"], random_sampling_calls=n_random)
    samp_mask = tab.in_sample.to_numpy()
    true_outside_sample = [t for t in true_glitch if t not in set(tab.loc[tab.in_sample, "token_id"])]
    st = run.stage("token_statistics", lambda: statistics_detector(
        model, tab.token_id.tolist(), samp_mask, (tab.oracle[samp_mask] == "glitch").to_numpy(), lookup,
        decision_threshold=float(p["decision_threshold"]), kernel=p["kernel"], degree=p["degree"], C=p["C"],
        class_weight=p["class_weight"] or None, seed=seed), key=[n_cand])
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
    target = float(p["recall_target"])
    curves = []
    for key, method, score, stage_s in (("glitchprober", "GlitchProber (activations)", tab.score.to_numpy(), timings),
                                        ("stats", "token statistics + SVM", st["score"], st_secs)):
        fixed = float(sum(v for k, v in stage_s.items() if k not in ("labelling", "verification")))
        calls = calls_for_recall(samp_mask, score, is_glitch, target)
        summary[f"{key}_oracle_calls_for_recall_target"] = calls
        summary[f"{key}_speed_ratio_for_recall_target"] = (fixed + calls * per_token_s) / time_exhaustive if calls is not None else None
        curves.append(recall_cost_curve(samp_mask, score, is_glitch, fixed, per_token_s, time_exhaustive).assign(method=method))
    curves.append(pd.DataFrame({"n_verified": [0, n_cand], "recall": [0.0, 1.0], "seconds": [0.0, time_exhaustive],
                                "cost_ratio": [0.0, 1.0], "method": "uniform random sampling (expected)"}))
    curve = pd.concat(curves, ignore_index=True)
    summary.update(recall_target=target, speed_ratio_floor_for_recall_target=target * len(true_glitch) / n_cand)
    sweep = run.stage("sweep", lambda: sample_ratio_sweep(
        det.projection, is_glitch, _ratios(p["sweep_ratios"]), kernel=p["kernel"], degree=p["degree"], C=p["C"],
        class_weight=p["class_weight"] or None, seed=seed), key=[n_cand])
    thr = threshold_sweep(tab, is_glitch, sorted(float(x) for x in str(p["threshold_sweep"]).split(",") if x.strip()))
    text = dict(zip(truth.token_id.astype(int), truth.token))
    gen = dict(zip(truth.token_id.astype(int), truth.generated))
    out = tab.assign(token=tab.token_id.map(text), ground_truth=tab.token_id.map(gt_cls))
    glitch_table = out[out.ground_truth == "glitch"].assign(generated=lambda d: d.token_id.map(gen))
    run.table("glitch_tokens", glitch_table[["token_id", "token", "generated", "in_sample", "score", "predicted", "glitch"]]
              .rename(columns={"glitch": "found", "score": "svm_score"}))
    run.table("sample_ratio_sweep", sweep)
    run.table("threshold_sweep", thr)
    run.table("recall_cost_curve", curve)
    methods = pd.DataFrame(
        [{"method": "exhaustive search", "stage": "oracle", "seconds": time_exhaustive, "recall": 1.0}]
        + [{"method": "GlitchProber", "stage": k, "seconds": v, "recall": summary["recall"]} for k, v in timings.items()]
        + [{"method": f"Magikarp (lowest {p['magikarp_share']:.1%}, own verification)", "stage": "verification",
            "seconds": summary["magikarp_time_s"], "recall": summary["magikarp_recall"]},
           {"method": "random sampling (same time)", "stage": "oracle", "seconds": n_random * per_token_s, "recall": rnd["recall"]}]
        + [{"method": "token statistics + SVM", "stage": k, "seconds": v, "recall": st_scores["recall"]} for k, v in st_secs.items()]
    )
    run.table("method_times", methods)
    run.figure("method_times", figures.method_time_figure(methods, model.spec))
    if len(sweep):
        run.figure("sample_ratio", figures.sample_ratio_figure(sweep, model.spec))
    return curve


def repair_step(model: Model, templates: dict[str, Any], det: Detection, verdicts: Verdicts, eval_pos: np.ndarray,
                p: dict[str, Any], quick: bool, seed: int) -> dict[str, Any]:
    """GlitchProber's repair fitted on the labelled sample, scored on held-out tokens, beside the rewording control.

    Neurons and strengths come from the sample's tokens (normal tokens for the neuron sets and the
    threshold, glitch tokens for the gaps); repair and damage are measured by generating on glitch
    and normal tokens of the evaluation set (outside the sample). The control asks the same tokens
    with other worked examples (``other_examples``), no hook.
    """
    rng = np.random.default_rng(seed + 1)
    tpl = templates[SINGLE_PROMPT]
    tab = det.table
    cand = tab.token_id.to_numpy().astype(int)
    sample = cand[tab.in_sample.to_numpy()]
    s_cls = np.array(verdicts.ask(SINGLE_PROMPT, sample))
    fit_normal, fit_glitch = sample[s_cls == "normal"], sample[s_cls == "glitch"]
    n_fit = int(p["quick_repair_fit_normal"] if quick else p["repair_fit_normal"])
    if len(fit_normal) > n_fit:
        fit_normal = rng.choice(fit_normal, size=n_fit, replace=False)
    if not len(fit_normal) or not len(fit_glitch):
        raise InterpError("repair needs normal and glitch tokens in the labelled sample")
    layers = det.key_layers
    an = neuron_activations(model, fit_normal.tolist(), layers, template=tpl, batch_size=p["oracle_batch_size"])
    ag = neuron_activations(model, fit_glitch.tolist(), layers, template=tpl, batch_size=p["oracle_batch_size"])
    thr = p["repair_threshold"]
    plan = key_neurons(an, ag, threshold=thr if isinstance(thr, (int, float)) else str(thr), always_share=p["always_share"])
    rule = plan.rule_based(alpha=p["rule_alpha"], beta=p["rule_beta"])

    n_g = int(p["quick_repair_glitch"] if quick else p["n_repair_glitch"])
    n_n = int(p["quick_repair_normal"] if quick else p["n_repair_normal"])
    ev = cand[eval_pos]
    ev_cls = np.array(verdicts.ask(SINGLE_PROMPT, ev))
    eval_glitch, eval_normal = ev[ev_cls == "glitch"], ev[ev_cls == "normal"]
    eval_glitch = rng.choice(eval_glitch, size=min(n_g, len(eval_glitch)), replace=False) if len(eval_glitch) else eval_glitch
    eval_normal = rng.choice(eval_normal, size=min(n_n, len(eval_normal)), replace=False) if len(eval_normal) else eval_normal
    ids = [int(t) for t in np.concatenate([eval_glitch, eval_normal])]
    kind = np.array(["glitch"] * len(eval_glitch) + ["normal"] * len(eval_normal))
    cons_tab = verdicts.cascade(eval_glitch, list(templates))[0] if len(eval_glitch) else pd.DataFrame(columns=["token_id", "consensus_all"])
    cons_map = dict(zip(cons_tab.token_id.astype(int), cons_tab.consensus_all))

    def oracle(hooks):
        with model.hooks(hooks):
            return repeat_oracle(model, ids, max_new_tokens=p["max_new_tokens"], batch_size=p["oracle_batch_size"],
                                 template=tpl, progress=False).table

    adaptive = oracle(repair_hooks(model, plan))
    fixed = oracle(repair_hooks(model, rule))
    control_prompt = "other_examples" if "other_examples" in templates else [n for n in templates if n != SINGLE_PROMPT][0]
    reworded = verdicts.ask(control_prompt, ids)
    table = pd.DataFrame({"token_id": ids, "group": kind, "consensus": [cons_map.get(t, "") for t in ids],
                          "single_prompt": verdicts.ask(SINGLE_PROMPT, ids), "repaired": adaptive.cls,
                          "rule_based": fixed.cls, "reworded": reworded,
                          "repaired_reply": adaptive.generated, "rule_based_reply": fixed.generated})
    g = table[table.group == "glitch"]
    gc = g[g.consensus == "glitch"]
    n = table[table.group == "normal"]

    def rate(df: pd.DataFrame, col: str, cls: str) -> Optional[float]:
        return float((df[col] == cls).mean()) if len(df) else None

    out = {
        "table": table,
        "repair_rate": rate(g, "repaired", "normal"),
        "repair_rule_based_rate": rate(g, "rule_based", "normal"),
        "repair_control_rate": rate(g, "reworded", "normal"),
        "repair_control_prompt": control_prompt,
        "normal_damage_rate": rate(n, "repaired", "glitch"),
        "normal_damage_rule_based_rate": rate(n, "rule_based", "glitch"),
        "repair_damage_rate_control": rate(n, "reworded", "glitch"),
        "repair_rate_consensus": rate(gc, "repaired", "normal"),
        "repair_rule_based_rate_consensus": rate(gc, "rule_based", "normal"),
        "repair_control_rate_consensus": rate(gc, "reworded", "normal"),
        "n_repair_glitch": int(len(g)), "n_repair_glitch_consensus": int(len(gc)), "n_repair_normal": int(len(n)),
        "n_repair_fit_normal": int(len(fit_normal)), "n_repair_fit_glitch": int(len(fit_glitch)),
        "n_always_active_neurons": plan.n_always, "n_never_active_neurons": plan.n_never,
        **{f"repair_n_{k}": v for k, v in plan.counts().items()},
        **{f"repair_threshold_{k}": v for k, v in plan.thresholds.items()},
        **{f"repair_alpha_{k}": v for k, v in plan.alpha.items()},
        **{f"repair_beta_{k}": v for k, v in plan.beta.items()},
        **{f"repair_{g_}_{k}": v for k, d in plan.gaps.items() for g_, v in d.items()},
    }
    ok = (out["repair_rate"] is not None and out["normal_damage_rate"] is not None and out["normal_damage_rate"] < 0.02
          and out["repair_control_rate"] is not None and out["repair_rate"] > out["repair_control_rate"])
    out["repair_counts"] = bool(ok)
    return out


PAPER_RECALL = 0.64  # GlitchProber's average recall, at which its cost is claimed
COST_TARGET = 0.5  # cost ratio (vs the exhaustive oracle) at which the cost claims count as reproduced here
COST_RULE = f"reproduced here: <= {COST_TARGET:g}x at recall >= {PAPER_RECALL:g}"

#: the paper's claims: (claim, summary key, paper's value, test that reproduces it)
CLAIMS = (
    ("glitch tokens exist (prevalence under the consensus label)", "glitch_prevalence_consensus",
     "glitch tokens in every model tested (a few % of the vocabulary)", lambda v, s: v > 0),
    ("detector precision after verification", "precision_consensus", "1.0", lambda v, s: v >= 0.999),
    ("detector recall after verification (consensus label)", "recall_consensus", "0.64 (average recall; F1 0.86)",
     lambda v, s: v >= 0.64),
    ("detector F1 after verification (consensus label)", "f1_consensus", "0.86 (average of 5 models)", lambda v, s: v >= 0.78),
    ("detection cost vs the exhaustive oracle at the paper's recall (consensus label)", "time_ratio_consensus",
     f"0.06x (89 vs 1,610 min, 7B models) at recall 0.64; {COST_RULE}",
     lambda v, s: v <= COST_TARGET and (s.get("recall_consensus") or 0) >= PAPER_RECALL),
    ("ranked search (token statistics, no forward pass): recall after verification (consensus label)",
     "search_recall_consensus", "0.64 (GlitchProber's average recall)", lambda v, s: v >= 0.64),
    ("ranked search: cost (forwarded tokens) vs the exhaustive consensus oracle", "search_cost_ratio_consensus",
     f"0.06x at recall 0.64 (GlitchProber); {COST_RULE}",
     lambda v, s: v <= COST_TARGET and (s.get("search_recall_consensus") or 0) >= PAPER_RECALL),
    ("repair rate (paper's hooks and formulas, held-out tokens)", "repair_rate", "0.50 (average of 5 models)",
     lambda v, s: v >= 0.25 and bool(s.get("repair_counts"))),
)


def claims_table(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per claim of the paper: what was measured, the paper's value and the verdict.

    Verdicts: ``reproduced`` (the claim's test holds: the cost claim only at the paper's recall, the
    repair only where its damage is below 2% and it beats the rewording control), ``not reproduced``,
    ``opposite`` (the cost claim when the detector is slower than exhaustive search; the repair claim
    when rewording the prompt repairs more than the repair does), ``not measurable`` (no value).
    """
    rows = []
    for claim, key, paper, test in CLAIMS:
        v = summary.get(key)
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            verdict = "not measurable"
        elif test(v, summary):
            verdict = "reproduced"
        elif key in ("time_ratio_consensus", "search_cost_ratio_consensus") and v >= 1:
            verdict = "opposite"
        elif key == "repair_rate" and summary.get("repair_control_rate") is not None and v < summary["repair_control_rate"]:
            verdict = "opposite"
        else:
            verdict = "not reproduced"
        rows.append({"claim": claim, "measured": v, "paper": paper, "verdict": verdict})
    return pd.DataFrame(rows)
