"""bf16 against fp32 on the embedded model: answer probabilities, ROME denominators, glitch labels."""

import pytest

from interp.precision import TOLERANCES, compare_precision


@pytest.mark.real_model
@pytest.mark.slow
def test_bf16_agrees_with_fp32_within_the_stated_tolerances(smollm):
    from interp.model import load_model

    bf16 = load_model("smollm2-135m", dtype="bfloat16")
    assert next(bf16.bridge.parameters()).dtype.is_floating_point and bf16.dtype != smollm.dtype
    r = compare_precision("smollm2-135m", "bfloat16", models={"float32": smollm, "bfloat16": bf16})
    assert (r["n_facts"], r["n_requests"], r["n_glitch_ids"]) == (64, 6, 256)
    assert set(r["within_tolerance"]) == set(TOLERANCES)
    assert all(r["within_tolerance"].values()), {k: r[k] for k in TOLERANCES}
    # bf16 does move the numbers: the comparison is not of a model with itself
    assert r["answer_prob_max_abs"] > 0 and r["denominator_rel_median"] > 0
