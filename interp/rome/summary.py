"""The numbers a ROME run reports: per variant, per subject position, and the paper's claims.

Everything here reads the per-edit table (one row per request and variant, written by
:mod:`interp.rome.pipeline`); nothing runs the model. A request *collapses under ROME* when its
``rome`` edit does; the normal cases are the others. The fix's efficacy on the requests that
collapse under ROME is the number Yang et al.'s claim "the fix keeps efficacy" rests on.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

POSITION_CLASSES = ("first", "subject-first", "later")

# Yang et al. (2024), Table 2 and Section 4: collapse-case vs normal-case quantities of ROME
PAPER = {
    "collapse_rate": "collapse in a few percent of CounterFact edits for GPT-2-XL, GPT-J, Llama-2-7b "
                     "(every edit whose subject is the prompt's first token)",
    "denominator": "normalised denominator 0.04 / 0.04 / 0.01 in collapse cases vs 9.60 / 12.78 / 2.63 in normal "
                   "cases (GPT-2-XL / GPT-J / Llama-2-7b): 200x-300x smaller",
    "numerator": "numerator norm larger in collapse cases: 168.55 / 140.27 / 4.57 vs 79.91 / 88.69 / 16.52 "
                 "(GPT-2-XL / GPT-J / Llama-2-7b; larger for 2 of 3 models)",
    "first_token": "the unprefixed key of a first-token subject lies far from every other key",
    "fix_no_collapse": "consistent keys (C-ROME) collapse on none of the collapse cases",
    "fix_efficacy": "consistent keys with a test-time prefix keep efficacy (about ROME's)",
}


def _mean(x: pd.Series) -> float:
    return float(x.mean()) if len(x) else float("nan")


def _median_abs(x: pd.Series) -> float:
    return float(x.abs().median()) if len(x) else float("nan")


def collapse_split(edits: pd.DataFrame) -> tuple[set, set]:
    """Case ids that collapse under ROME, and the normal ones."""
    rome = edits[edits.variant == "rome"]
    collapsed = set(rome.case_id[rome.collapse])
    return collapsed, set(rome.case_id) - collapsed


def variant_table(edits: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    """Per variant: collapse rate, efficacy (all, ROME-normal, ROME-collapse cases), generalisation,
    locality, neighbourhood score, median perplexity ratio, clamp-binding fraction."""
    collapsed, normal = collapse_split(edits)
    rows = []
    for v in variants:
        e = edits[edits.variant == v]
        rows.append({
            "variant": v,
            "collapse_rate": _mean(e.collapse.astype(float)),
            "n_collapse": int(e.collapse.sum()),
            "efficacy": _mean(e.efficacy),
            "efficacy_normal": _mean(e[e.case_id.isin(normal)].efficacy),
            "efficacy_collapse_cases": _mean(e[e.case_id.isin(collapsed)].efficacy),
            "generalization": _mean(e.generalization),
            "locality": _mean(e.locality),
            "neighborhood_score": _mean(e.neighborhood_score),
            "ppl_ratio_median": float(e.ppl_ratio.median()),
        })
    return pd.DataFrame(rows)


def position_table(edits: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    """Collapse rate, efficacy and median normalised denominator per subject position class
    (``first``: the subject's last token is the first token; ``subject-first``: a multi-token
    subject starts the prompt; ``later``) and variant."""
    rows = []
    for cls in POSITION_CLASSES:
        for v in variants:
            e = edits[(edits.variant == v) & (edits.position_class == cls)]
            rows.append({
                "position_class": cls, "variant": v, "n": len(e),
                "collapse_rate": _mean(e.collapse.astype(float)),
                "efficacy": _mean(e.efficacy),
                "denominator_normalized_median": _median_abs(e.denominator_normalized),
                "clamp_bound_fraction": _mean(e.clamp_bound.astype(float)),
            })
    return pd.DataFrame(rows)


def edit_summary(edits: pd.DataFrame, variants: Sequence[str]) -> dict:
    """The headline numbers of the edits (``summary.json`` keys)."""
    collapsed, normal = collapse_split(edits)
    vt = variant_table(edits, variants).set_index("variant")
    rome = edits[edits.variant == "rome"].set_index("case_id")
    coll, norm = rome.loc[sorted(collapsed)], rome.loc[sorted(normal)]
    eff_n_rome = vt.loc["rome", "efficacy_normal"]
    out = {
        **{f"collapse_rate_{v}": vt.loc[v, "collapse_rate"] for v in variants},
        **{f"efficacy_{v}": vt.loc[v, "efficacy"] for v in variants},
        **{f"efficacy_normal_{v}": vt.loc[v, "efficacy_normal"] for v in variants},
        **{f"generalization_{v}": vt.loc[v, "generalization"] for v in variants},
        **{f"locality_{v}": vt.loc[v, "locality"] for v in variants},
        "n_collapse_rome": len(collapsed),
        "efficacy_collapse_cases_rome": vt.loc["rome", "efficacy_collapse_cases"],
        "efficacy_collapse_cases_consistent_prefix": (
            vt.loc["consistent_prefix", "efficacy_collapse_cases"] if "consistent_prefix" in vt.index else float("nan")),
        "efficacy_ratio_consistent_prefix_vs_rome_normal": (
            vt.loc["consistent_prefix", "efficacy_normal"] / eff_n_rome
            if "consistent_prefix" in vt.index and eff_n_rome else float("nan")),
        "denominator_median_collapse": _median_abs(coll.denominator),
        "denominator_median_normal": _median_abs(norm.denominator),
        "denominator_normalized_median_collapse": _median_abs(coll.denominator_normalized),
        "denominator_normalized_median_normal": _median_abs(norm.denominator_normalized),
        "denominator_median_subject_first_token": _median_abs(rome[rome.position_class == "first"].denominator),
        "denominator_median_subject_later": _median_abs(rome[rome.position_class != "first"].denominator),
        "denominator_normalized_median_subject_first_token": _median_abs(rome[rome.position_class == "first"].denominator_normalized),
        "denominator_normalized_median_subject_later": _median_abs(rome[rome.position_class != "first"].denominator_normalized),
        "denominator_consistent_median": _median_abs(rome.denominator_consistent),
        "numerator_norm_mean_collapse": _mean(coll.numerator_norm),
        "numerator_norm_mean_normal": _mean(norm.numerator_norm),
        "delta_rel_norm_median_collapse": float(coll.delta_rel_norm.median()) if len(coll) else float("nan"),
        "delta_rel_norm_median_normal": float(norm.delta_rel_norm.median()) if len(norm) else float("nan"),
        "clamp_bound_fraction_collapse": _mean(coll.clamp_bound.astype(float)),
        "clamp_bound_fraction_normal": _mean(norm.clamp_bound.astype(float)),
        "clamp_bound_fraction_collapse_consistent_prefix": _mean(
            edits[(edits.variant == "consistent_prefix") & edits.case_id.isin(collapsed)].clamp_bound.astype(float)),
        "delta_w_norm_median_collapse": float(coll.delta_w_norm.median()) if len(coll) else float("nan"),
        "delta_w_norm_median_normal": float(norm.delta_w_norm.median()) if len(norm) else float("nan"),
        "ppl_ratio_max_normal_rome": float(norm.ppl_ratio.max()) if len(norm) else float("nan"),
        "ppl_ratio_min_collapse_rome": float(coll.ppl_ratio.min()) if len(coll) else float("nan"),
    }
    if "consistent_prefix" in variants:
        out["ppl_ratio_max_consistent_prefix"] = float(edits[edits.variant == "consistent_prefix"].ppl_ratio.max())
    den_c, den_n = out["denominator_normalized_median_collapse"], out["denominator_normalized_median_normal"]
    out["denominator_ratio_normal_over_collapse"] = den_n / den_c if den_c and np.isfinite(den_c) else float("nan")
    return out


def claims_table(summary: dict, positions: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims beside what this run measured, with a verdict each
    (``reproduced``, ``not reproduced``, ``opposite``, ``not measurable``)."""
    nan = float("nan")

    def fin(*xs: float) -> bool:
        return all(x is not None and np.isfinite(x) for x in xs)

    rows = []
    n_coll = int(summary.get("n_collapse_rome", 0))
    first = positions[(positions.position_class == "first") & (positions.variant == "rome")]
    first_rate = float(first.collapse_rate.iloc[0]) if len(first) and first.n.iloc[0] else nan
    later = positions[(positions.position_class == "later") & (positions.variant == "rome")]
    later_rate = float(later.collapse_rate.iloc[0]) if len(later) and later.n.iloc[0] else nan
    rate = summary.get("collapse_rate_rome", nan)
    if not fin(first_rate):
        v = "not measurable"
    else:
        v = "reproduced" if first_rate >= 0.5 and (not fin(later_rate) or later_rate < first_rate) else "not reproduced"
    rows.append({"claim": "ROME collapses on a fraction of edits, those whose subject is the first token",
                 "measured": f"collapse rate {rate:.3f} ({n_coll} edits); subject = first token {first_rate:.3f}, "
                             f"later {later_rate:.3f}", "paper": PAPER["collapse_rate"], "verdict": v})
    dc, dn = summary.get("denominator_normalized_median_collapse", nan), summary.get("denominator_normalized_median_normal", nan)
    if n_coll == 0 or not fin(dc, dn):
        v = "not measurable"
    else:
        v = "reproduced" if dc * 10 < dn else ("opposite" if dc > dn else "not reproduced")
    rows.append({"claim": "the denominator collapses: (C⁻¹k̄)ᵀkᵘ/‖C⁻¹k̄‖ far smaller in collapse cases",
                 "measured": f"median {dc:.4g} (collapse) vs {dn:.4g} (normal)", "paper": PAPER["denominator"], "verdict": v})
    nc, nn = summary.get("numerator_norm_mean_collapse", nan), summary.get("numerator_norm_mean_normal", nan)
    if n_coll == 0 or not fin(nc, nn):
        v = "not measurable"
    else:
        v = "reproduced" if nc > nn else "opposite"
    rows.append({"claim": "the numerator ‖v* − W kᵘ‖ is larger in collapse cases",
                 "measured": f"mean {nc:.4g} (collapse) vs {nn:.4g} (normal)", "paper": PAPER["numerator"], "verdict": v})
    ratio = summary.get("first_token_key_norm_ratio", nan)
    wf, wl = summary.get("whitened_norm_first_texts", nan), summary.get("whitened_norm_later_texts", nan)
    dist = summary.get("first_token_key_centroid_distance_ratio", nan)
    # anomalous: first-position keys differ from later ones by more than 2x in whitened norm
    # sqrt(kᵀC⁻¹k) (the size the denominator sees) or in plain norm
    if not fin(wf, wl, ratio):
        v = "not measurable"
    else:
        v = "reproduced" if (max(wf / wl, wl / wf) > 2 or max(ratio, 1 / ratio) > 2) else "not reproduced"
    rows.append({"claim": "first-token keys are anomalous (far from all later keys)",
                 "measured": f"whitened key norm {wf:.3g} (first token) vs {wl:.3g} (later), plain norm ratio {ratio:.3g}; "
                             f"distance to the later-key centroid {dist:.3g}x that of later keys",
                 "paper": PAPER["first_token"], "verdict": v})
    cp = summary.get("collapse_rate_consistent_prefix", nan)
    c = summary.get("collapse_rate_consistent", nan)
    if n_coll == 0 or not fin(cp):
        v = "not measurable"
    else:
        v = "reproduced" if cp == 0 else "not reproduced"
    rows.append({"claim": "the fix (consistent keys) does not collapse",
                 "measured": f"collapse rate {c:.3f} (consistent), {cp:.3f} (consistent + prefix)",
                 "paper": PAPER["fix_no_collapse"], "verdict": v})
    en, ec, er = (summary.get("efficacy_ratio_consistent_prefix_vs_rome_normal", nan),
                  summary.get("efficacy_collapse_cases_consistent_prefix", nan), summary.get("efficacy_collapse_cases_rome", nan))
    if not fin(en):
        v = "not measurable"
    else:
        v = "reproduced" if en >= 0.9 and (not fin(ec) or ec >= 0.9) else "not reproduced"
    rows.append({"claim": "the fix keeps efficacy",
                 "measured": f"normal cases {en:.3f}x ROME's; on ROME's collapse cases {ec:.3f} (ROME {er:.3f})",
                 "paper": PAPER["fix_efficacy"], "verdict": v})
    return pd.DataFrame(rows)
