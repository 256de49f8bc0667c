import pytest
import torch

from interp import InterpError
from interp.glitch.magikarp import (
    VERIFICATION_PROMPTS,
    embeddings_tied,
    magikarp_candidates,
    magikarp_indicator,
    magikarp_verify,
    unused_reference_tokens,
    verification_rows,
)
from interp.testing import tiny_model


def test_planted_unused_rows_rank_lowest():
    m = tiny_model("llama", seed=3)
    W = m.hf_model.lm_head.weight
    with torch.no_grad():
        W[[10, 20, 30]] = W[256] * 1.0 + 0.01 * torch.randn(3, W.shape[1])
    scores, kind = magikarp_indicator(m, [256], kind="unembed_cosine")
    assert kind == "unembed_cosine"
    assert set(magikarp_candidates(scores, share=4 / 300)) == {10, 20, 30, 256}
    assert scores[256] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(InterpError):
        magikarp_indicator(m, [], kind="unembed_cosine")
    with pytest.raises(InterpError):
        magikarp_candidates(scores, share=0)


def test_untied_models_use_the_embedding_norm():
    m = tiny_model("llama", seed=4)
    assert not embeddings_tied(m)
    with torch.no_grad():
        m.hf_model.model.embed_tokens.weight[[7, 9]] *= 1e-3
    scores, kind = magikarp_indicator(m, [256])
    assert kind == "embed_norm"
    among = [t for t in range(300) if t != 256]  # the pad row is zero in this tiny model
    assert set(magikarp_candidates(scores, share=2 / 299, among=among)) == {7, 9}


def test_reference_rows_fall_back_and_say_which():
    m = tiny_model("gpt2")
    ids, source = unused_reference_tokens(m)
    assert source in ("named_unused", "rows_past_tokenizer", "unreachable", "special_tokens") and ids
    if len(m.tokenizer) < m.d_vocab:
        assert source == "rows_past_tokenizer" and ids == list(range(len(m.tokenizer), m.d_vocab))


def test_verification_prompts_put_the_token_in_by_id():
    m = tiny_model("gpt2")
    pre, row = verification_rows(m, VERIFICATION_PROMPTS[2], 299)
    assert row.count(299) == 2 * 50 + 1 and row[-1] == 299  # 50 shots of "{token}{token}", then the prompt
    pre, row = verification_rows(m, VERIFICATION_PROMPTS[0], 299)
    assert row.count(299) == 2 * 20 + 1 and row[-1] != 299 and 299 not in pre  # ends with " «", where the token should come
    short = (("echo", 2, "Repeat:", " <{token}>", " <{token}>"),)
    out = magikarp_verify(m, [70, 71, 72], prompts=short)
    assert list(out.columns) == ["token_id", "p_echo", "max_prob", "verified"]
    assert ((out.max_prob > 0) & (out.max_prob <= 1)).all()
    assert (out.verified == (out.max_prob < 0.01)).all()
