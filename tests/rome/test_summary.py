import pandas as pd

from interp.rome.summary import claims_table, edit_summary, position_table, variant_table

VARIANTS = ["rome", "consistent", "consistent_prefix"]


def _edits():
    rows = []
    # case 0, 1: subject first token, collapse under ROME; case 2, 3: later, normal
    for c, cls, coll in [(0, "first", True), (1, "first", True), (2, "later", False), (3, "later", False)]:
        for v in VARIANTS:
            rome = v == "rome"
            rows.append(dict(
                case_id=c, variant=v, position_class=cls, collapse=coll and rome,
                efficacy=1.0 if (rome or not coll or (v == "consistent_prefix" and c == 0)) else 0.0,
                generalization=1.0, locality=1.0, neighborhood_score=1.0, ppl_ratio=10.0 if coll and rome else 1.1,
                denominator=0.01 if coll and rome else 5.0, denominator_normalized=0.001 if coll and rome else 2.0,
                denominator_consistent=5.0, numerator_norm=1.0 if coll else 3.0, delta_rel_norm=4.0 if coll else 1.0,
                clamp_bound=coll, delta_w_norm=100.0 if coll and rome else 1.0,
            ))
    return pd.DataFrame(rows)


def test_summary_splits_collapse_and_normal_cases():
    e = _edits()
    s = edit_summary(e, VARIANTS)
    assert s["collapse_rate_rome"] == 0.5 and s["n_collapse_rome"] == 2 and s["collapse_rate_consistent"] == 0.0
    assert s["efficacy_collapse_cases_rome"] == 1.0 and s["efficacy_collapse_cases_consistent_prefix"] == 0.5
    assert s["denominator_normalized_median_collapse"] == 0.001 and s["denominator_normalized_median_normal"] == 2.0
    assert s["clamp_bound_fraction_collapse"] == 1.0 and s["clamp_bound_fraction_normal"] == 0.0
    assert s["efficacy_ratio_consistent_prefix_vs_rome_normal"] == 1.0
    vt = variant_table(e, VARIANTS).set_index("variant")
    assert vt.loc["consistent", "efficacy_collapse_cases"] == 0.0
    pos = position_table(e, VARIANTS)
    first = pos[(pos.position_class == "first") & (pos.variant == "rome")].iloc[0]
    assert first.collapse_rate == 1.0 and first.n == 2


def test_claims_verdicts_follow_the_numbers():
    e = _edits()
    s = edit_summary(e, VARIANTS)
    s.update(first_token_key_centroid_distance_ratio=0.3, first_token_key_norm_ratio=0.2, whitened_norm_first_texts=5.0,
             whitened_norm_later_texts=40.0)
    c = claims_table(s, position_table(e, VARIANTS)).set_index("claim")
    v = c.verdict.tolist()
    assert list(c.reset_index().columns) == ["claim", "measured", "paper", "verdict"]
    assert v[0] == "reproduced"  # first-token subjects collapse, later ones do not
    assert v[1] == "reproduced"  # denominator 0.001 vs 2
    assert v[2] == "opposite"  # numerator smaller in collapse cases here
    assert v[3] == "reproduced" and v[4] == "reproduced"
    assert v[5] == "not reproduced"  # efficacy on collapse cases 0.5 < 0.9


def test_first_token_claim_needs_a_norm_gap():
    e = _edits()
    s = edit_summary(e, VARIANTS)
    s.update(first_token_key_centroid_distance_ratio=1.0, first_token_key_norm_ratio=0.9, whitened_norm_first_texts=38.0,
             whitened_norm_later_texts=40.0)
    assert claims_table(s, position_table(e, VARIANTS)).verdict.iloc[3] == "not reproduced"
