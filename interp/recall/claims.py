"""The paper's claims, each with the number measured here and a verdict by a stated threshold.

Verdicts are ``reproduced``, ``not reproduced``, ``opposite`` or ``not measurable`` (the quantity
could not be computed, e.g. no head attends mostly to the first position). The thresholds:

* answer probability drops in the last layers: the peak logit-lens answer probability over the
  points from ``L - 1 - final_layers`` on (the final attention's ``resid_mid`` included) exceeds
  the output's by at least :data:`DROP_MIN` (known facts, zero-shot, relations pooled);
  ``opposite`` when instead the output exceeds the probability before those layers by
  :data:`DROP_MIN` and nothing drops.
* final-layer heads attend to the first position: at least :data:`FIRST_POSITION_FRACTION` of the
  final layer's heads put more than half their attention on position 0.
* the first-position final heads write frequent tokens / the final MLP intercept is aligned with
  frequency: Spearman correlation of their logits with log frequency (tokens that occur) at least
  :data:`CORR_MIN`; ``opposite`` at most ``-CORR_MIN``.
* argument heads: mean-ablating them lowers the answer probability by at least
  :data:`ARG_MIN_DROP` and at least :data:`ARG_RATIO` times the drop from random heads of the same
  layers (floored at 0.01); ``opposite`` when the random heads drop it as much or more.
* MLP activation: over the decomposed layers, the argument heads' mean coefficient is positive and
  exceeds the other heads' by :data:`ALPHA_MARGIN`; ``opposite`` when it is lower by that margin.
* function application: at the best decomposed layer the intercept ranks its own task's answers
  above other tasks' answers with mean AUC at least :data:`AUC_MIN`; ``opposite`` at most 0.5 at
  every layer.
* mitigation gain: on the test facts and on the independent facts (zero- and few-shot averaged) the
  mean answer probability rises by at least :data:`GAIN_MIN` with no accuracy loss and a perplexity
  cost of at most :data:`PPL_COST_MAX`; ``opposite`` when it falls on both by more than 0.01.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

DROP_MIN = 0.02
FIRST_POSITION_FRACTION = 0.5
CORR_MIN = 0.1
ARG_RATIO = 3.0
ARG_MIN_DROP = 0.05
ALPHA_MARGIN = 0.1
AUC_MIN = 0.75
GAIN_MIN = 0.05
PPL_COST_MAX = 0.02

VERDICTS = ("reproduced", "not reproduced", "opposite", "not measurable")

PAPER = {
    "answer probability drops in the last layers": "the answer's probability peaks before the output and the final layer(s) lower it (anti-overconfidence)",
    "final-layer heads attend to the first position": "the final layer's suppressing heads attend mostly to the first (start) token",
    "first-position final heads write frequent tokens": "those heads write high-frequency tokens, pulling the output towards the frequency prior",
    "final MLP intercept aligned with frequency": "the final MLP's task-independent part promotes frequent tokens",
    "argument heads": "a few mid-to-late heads move the argument to the last position; ablating them hurts recall far more than random heads",
    "MLP activation": "later MLPs amplify (activate) the argument heads' outputs",
    "function application": "the MLP's argument-independent part applies the task's function (promotes the task's answers)",
    "mitigation gain": "removing the final-layer suppression raises recall on facts not used to choose it",
}


def _nan(*xs: Any) -> bool:
    return any(x is None or (isinstance(x, float) and math.isnan(x)) for x in xs)


def _sign(x: float, lo: float, hi: float) -> str:
    return "reproduced" if x >= hi else "opposite" if x <= lo else "not reproduced"


def claims_table(v: dict[str, Any]) -> pd.DataFrame:
    """One row per claim: ``claim``, ``measured``, ``paper``, ``verdict``.

    Args:
        v: the measured values (keys as the pipeline's summary, plus ``late_peak_prob``,
            ``prob_before_last_layers``, ``first_position_heads_freq_spearman``,
            ``final_mlp_intercept_freq_spearman``, ``mlp_best_auc_layer``, ``mlp_best_task_auc``,
            ``mlp_max_task_auc``, ``mitigation_*`` gains).
    """
    rows = []

    def add(claim: str, measured: str, verdict: str) -> None:
        rows.append({"claim": claim, "measured": measured, "paper": PAPER[claim], "verdict": verdict})

    peak, before, fin = v.get("late_peak_prob"), v.get("prob_before_last_layers"), v.get("logit_lens_final_prob")
    c = "answer probability drops in the last layers"
    if _nan(peak, before, fin):
        add(c, "no known facts", "not measurable")
    else:
        drop = peak - fin
        verdict = "reproduced" if drop >= DROP_MIN else "opposite" if fin - before >= DROP_MIN else "not reproduced"
        add(c, f"late peak {peak:.3f} -> output {fin:.3f} (drop {drop:+.3f}); before the last layers {before:.3f}; "
               f"final attention {v.get('final_attention_change', float('nan')):+.3f}, final MLP {v.get('final_mlp_change', float('nan')):+.3f}",
            verdict)

    frac = v.get("final_heads_frac_attn_first_gt_half")
    c = "final-layer heads attend to the first position"
    add(c, "not measured", "not measurable") if _nan(frac) else add(
        c, f"{frac:.2f} of final-layer heads attend > 0.5 to position 0 (mean attention {v.get('final_heads_attn_first_mean', float('nan')):.2f})",
        "reproduced" if frac >= FIRST_POSITION_FRACTION else "not reproduced")

    sp = v.get("first_position_heads_freq_spearman")
    c = "first-position final heads write frequent tokens"
    add(c, "no final-layer head attends mostly to position 0", "not measurable") if _nan(sp) else add(
        c, f"Spearman {sp:+.3f} (summed first-position heads vs log frequency, {v.get('frequency_source', '')})", _sign(sp, -CORR_MIN, CORR_MIN))

    sp = v.get("final_mlp_intercept_freq_spearman")
    c = "final MLP intercept aligned with frequency"
    add(c, "no decomposition of the final MLP", "not measurable") if _nan(sp) else add(
        c, f"Spearman {sp:+.3f} (final MLP output {v.get('final_mlp_freq_spearman', float('nan')):+.3f})", _sign(sp, -CORR_MIN, CORR_MIN))

    a, r = v.get("argument_ablation_drop"), v.get("random_ablation_drop")
    c = "argument heads"
    if _nan(a, r):
        add(c, "no argument heads", "not measurable")
    else:
        ok = a >= ARG_MIN_DROP and a >= ARG_RATIO * max(r, 0.01)
        add(c, f"ablation drop {a:.3f} vs random heads {r:.3f} ({a / max(r, 0.01):.1f}x the floored random drop)",
            "reproduced" if ok else "opposite" if a <= r else "not reproduced")

    aa, ao = v.get("mlp_alpha_argument_mean"), v.get("mlp_alpha_other_mean")
    c = "MLP activation"
    if _nan(aa, ao):
        add(c, "no argument head feeds a decomposed MLP", "not measurable")
    else:
        verdict = "reproduced" if aa > 0 and aa - ao >= ALPHA_MARGIN else "opposite" if aa - ao <= -ALPHA_MARGIN else "not reproduced"
        add(c, f"mean coefficient argument heads {aa:+.3f} vs other heads {ao:+.3f}; held-out R2 {v.get('mlp_r2_cv_mean', float('nan')):.3f}",
            verdict)

    auc, layer, mx = v.get("mlp_best_task_auc"), v.get("mlp_best_auc_layer"), v.get("mlp_max_task_auc")
    c = "function application"
    if _nan(auc):
        add(c, "no decomposition", "not measurable")
    else:
        verdict = "reproduced" if auc >= AUC_MIN else "opposite" if mx <= 0.5 else "not reproduced"
        add(c, f"intercept task AUC {auc:.3f} at layer {layer} (mean over layers {v.get('mlp_task_auc_mean', float('nan')):.3f}); "
               f"answer percentile {v.get('mlp_intercept_answer_percentile_best', float('nan')):.3f}", verdict)

    gt, gi = v.get("mitigation_gain_test"), v.get("mitigation_gain_independent")
    c = "mitigation gain"
    if _nan(gt) or v.get("mitigation_method") == "none":
        add(c, "no mitigation chosen on the train facts (none helped)", "not reproduced" if not _nan(gt) else "not measurable")
    else:
        at, ai = v.get("mitigation_acc_change_test", 0.0), v.get("mitigation_acc_change_independent", float("nan"))
        cost = v.get("mitigation_ppl_cost", float("nan"))
        gi_ok = not _nan(gi) and gi >= GAIN_MIN and not _nan(ai) and ai >= 0
        ok = gt >= GAIN_MIN and at >= 0 and gi_ok and not _nan(cost) and cost <= PPL_COST_MAX
        verdict = "reproduced" if ok else "opposite" if gt < -0.01 and (_nan(gi) or gi < -0.01) else "not reproduced"
        add(c, f"{v.get('mitigation_method')}: answer probability {gt:+.3f} test, {gi:+.3f} independent; accuracy {at:+.3f} / "
               f"{ai:+.3f}; perplexity {cost:+.2%}" + _bound(v.get("mitigation_ppl_cost_upper")), verdict)
    return pd.DataFrame(rows, columns=["claim", "measured", "paper", "verdict"])


def _bound(upper: Any) -> str:
    """`` (95% bound +x%)`` for a held-out perplexity cost's one-sided upper bound, "" where none was measured."""
    return "" if upper is None or _nan(upper) else f" (95% bound {upper:+.2%})"
