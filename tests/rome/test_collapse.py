import math

import pytest
import torch

import interp
from interp.errors import InterpError
from interp.rome.collapse import collapse_threshold_report, is_collapse, perplexity, reference_texts, token_nll


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_token_nll_matches_logits(tiny_models, family):
    m = tiny_models[family]
    texts = m.encode(["Hello world, again and again.", "Short text here."])
    nll = token_nll(m, texts)
    lg = interp.capture(m, texts, logits=True, positions="all").logits
    for x, ids, got in zip(lg, texts, nll):
        want = torch.nn.functional.cross_entropy(x[:-1].float(), torch.tensor(ids[1:]))
        assert got == pytest.approx(float(want), rel=1e-4)
    part = token_nll(m, texts, score_from=[5, 3])
    want = torch.nn.functional.cross_entropy(lg[0][4:-1].float(), torch.tensor(texts[0][5:]))
    assert part[0] == pytest.approx(float(want), rel=1e-4)
    # the texts' positions are unembedded together in chunks: a chunk edge inside a text changes nothing
    assert token_nll(m, texts, score_from=[5, 3], unembed_chunk=4) == pytest.approx(part, rel=1e-5)
    with pytest.raises(InterpError):
        token_nll(m, texts, score_from=[100, 1])


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_edited_perplexity_from_the_edited_layer_equals_whole_passes(tiny_models, family):
    from interp.rome.collapse import edited_perplexity, reference_perplexity, reference_tails
    from interp.rome.rome_main import RankOneUpdate, applied_edit

    m = tiny_models[family]
    layer = 1
    ref = reference_perplexity(m, ["Hi there. ", "Once more. "], 3, 20, 2, 5)
    tails = reference_tails(m, ref, layer)
    assert (tails is None) == (family == "gpt2")  # learned positions: whole passes instead
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(m.d_mlp, generator=g), torch.randn(m.d_model, generator=g)
    up = RankOneUpdate(numerator=3.0 * v, u=u, denominator=1.0, variant="rome")
    for prefixed in (False, True):
        with applied_edit(m, layer, up):
            fast = edited_perplexity(m, ref, prefixed, tails)
            whole = edited_perplexity(m, ref, prefixed)
        assert fast == pytest.approx(whole, rel=1e-5)
        assert abs(whole["ppl_ratio"] - 1) > 1e-3  # the edit acted
    assert reference_tails(m, ref, 0) is None
    if tails:
        with pytest.raises(InterpError, match="other texts"):
            token_nll(m, ref.texts.generic, tail=tails["own"])


def test_reference_texts(tiny_models):
    m = tiny_models["llama"]
    ref = reference_texts(m, n_generic=3, max_tokens=20, n_generations=2, prompt_tokens=4, gen_tokens=5)
    assert len(ref.generic) == 3 and all(len(t) <= 20 for t in ref.generic)
    assert [len(t) for t in ref.generations] == [9, 9] and ref.generation_prompt_lengths == [4, 4]
    with pytest.raises(InterpError):
        reference_texts(m, n_generic=1000)


def test_threshold_and_report():
    assert perplexity([0.0, 2 * math.log(2)]) == pytest.approx(2.0)
    assert is_collapse(3.0, 2.0) and not is_collapse(1.5, 2.0) and is_collapse(float("inf"), 2.0)
    rep = collapse_threshold_report([1.0, 1.1, 0.9, 500.0, 2000.0], 2.0)
    assert rep["n_below"] == 3 and rep["n_above"] == 2
    assert rep["max_ratio_below"] == pytest.approx(1.1) and rep["min_ratio_above"] == pytest.approx(500.0)
    assert rep["widest_gap_low"] == pytest.approx(1.1) and rep["widest_gap_high"] == pytest.approx(500.0)
