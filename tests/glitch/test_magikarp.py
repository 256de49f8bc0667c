import numpy as np
import pytest
import torch

from interp import InterpError
from interp.glitch.magikarp import magikarp_candidates, magikarp_indicator, unused_reference_tokens
from interp.testing import tiny_model


def test_planted_unused_rows_rank_lowest():
    m = tiny_model("llama", seed=3)
    W = m.hf_model.lm_head.weight
    with torch.no_grad():
        W[[10, 20, 30]] = W[256] * 1.0 + 0.01 * torch.randn(3, W.shape[1])
    scores = magikarp_indicator(m, [256])
    assert set(magikarp_candidates(scores, share=4 / 300)) == {10, 20, 30, 256}
    assert scores[256] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(InterpError):
        magikarp_indicator(m, [])
    with pytest.raises(InterpError):
        magikarp_candidates(scores, share=0)


@pytest.mark.real_model
def test_unused_reference_excludes_template_tokens(smollm):
    from interp.glitch.oracle import repeat_template

    tpl = repeat_template(smollm)
    ref = unused_reference_tokens(smollm, tpl)
    assert ref and not set(ref) & (set(tpl.prefix_ids) | set(tpl.suffix_ids))
    special = set(smollm.tokenizer.all_special_ids) | set(smollm.tokenizer.added_tokens_decoder)
    assert len(ref) >= 10 and set(ref) <= special
