"""Every family: logits match the plain HF forward pass, and the analyses' hooks fire with the
documented shapes. The README's family table is written from what these tests check."""

import pytest
import torch

import interp
from interp.testing import TINY_FAMILIES, tiny_hf_model, tiny_model

PROMPTS = ["The capital of France is", "Hi"]


def _hf_logits(model, ids):
    with torch.no_grad():
        return model.hf_model(ids).logits


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_logits_match_hf(family):
    model = tiny_model(family)
    ids = torch.tensor([model.encode(PROMPTS[0])])
    ref = tiny_hf_model(family)(ids).logits.detach()
    got = model.forward(ids)
    tol = 1e-4 * ref.abs().max().item()
    assert (got - ref).abs().max().item() <= tol


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_hooks_fire_with_documented_shapes(family):
    model = tiny_model(family)
    L, n = 1, len(PROMPTS)
    names = {k: model.hook(k, L) for k in ("pattern", "z", "mlp_gate", "mlp_data", "mlp_post", "resid_pre", "resid_post", "result")}
    hooks = [h for h in names.values() if h is not None]
    c = interp.capture(model, PROMPTS, hooks=hooks, positions="last")
    T = int(c.lengths.max())
    assert c[names["pattern"]].shape == (n, model.n_heads, T)
    assert torch.allclose(c[names["pattern"]].sum(-1), torch.ones(n, model.n_heads), atol=1e-4)
    assert c[names["z"]].shape == (n, model.n_heads, model.d_head)
    assert c[names["mlp_post"]].shape == (n, model.d_mlp)
    assert c[names["mlp_gate"]].shape == (n, model.d_mlp)
    assert c[names["resid_pre"]].shape == (n, model.d_model)
    assert c[names["result"]].shape == (n, model.n_heads, model.d_model)
    assert (names["mlp_data"] is not None) == model.gated_mlp == (family in ("llama", "gemma3", "qwen2"))
    if model.gated_mlp:
        assert c[names["mlp_data"]].shape == (n, model.d_mlp)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_head_results_sum_to_attention_output(family):
    """Per-head outputs from hook_z plus the output bias rebuild the attention output
    (``attn.hook_out``: before Gemma's post-attention norm, equal to ``hook_attn_out`` elsewhere)."""
    model = tiny_model(family)
    c = interp.capture(model, PROMPTS, hooks=["blocks.2.attn.hook_result", "blocks.2.attn.hook_out", "blocks.2.hook_attn_out"])
    rebuilt = c["blocks.2.attn.hook_result"].sum(1) + model.b_O(2)
    ref = c["blocks.2.attn.hook_out"]
    if family != "gemma3":
        assert torch.allclose(ref, c["blocks.2.hook_attn_out"])
    assert torch.allclose(rebuilt, ref, atol=1e-4 * ref.abs().max().item())


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_logit_lens_of_final_resid_is_the_logits(family):
    model = tiny_model(family)
    c = interp.capture(model, PROMPTS, hooks=[f"blocks.{model.n_layers - 1}.hook_resid_post"], logits=True)
    lens = model.unembed(c[f"blocks.{model.n_layers - 1}.hook_resid_post"])
    assert torch.allclose(lens, c.logits, atol=1e-4 * c.logits.abs().max().item())


def test_gqa_shapes():
    model = tiny_model("llama")
    assert (model.n_heads, model.n_kv_heads) == (4, 2)
    assert model.W_O(0).shape == (model.n_heads, model.d_head, model.d_model)
    assert model.W_U.shape == (model.d_model, model.d_vocab)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_tl_numerics_change_logits_only_by_a_constant(family):
    hf = tiny_model(family)
    tl = tiny_model(family, numerics="tl")
    ids = torch.tensor([hf.encode(PROMPTS[0])])
    a, b = hf.forward(ids), tl.forward(ids)
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    assert torch.allclose(a, b, atol=1e-4 * a.abs().max().item())
    assert tl.describe()["numerics"] == "tl"


def test_mlp_out_parameter_is_live():
    for family, transposed in [("gpt2", True), ("llama", False)]:
        model = tiny_model(family)
        w, t = model.mlp_out_parameter(1)
        assert t is transposed
        ids = torch.tensor([model.encode("abc")])
        before = model.forward(ids)
        with torch.no_grad():
            w.mul_(0.0)
        assert not torch.allclose(before, model.forward(ids))


@pytest.mark.real_model
def test_embedded_model_knows_paris(smollm):
    assert (smollm.n_layers, smollm.n_heads, smollm.n_kv_heads, smollm.d_model) == (30, 9, 3, 576)
    ids = smollm.to_tokens("The capital of France is")
    assert smollm.tokenizer.decode(smollm.forward(ids)[0, -1].argmax()) == " Paris"
    assert smollm.prepend_bos is False and ids[0, 0] != smollm.bos_token_id


def test_bad_hook_kind_and_layer():
    model = tiny_model("gpt2")
    with pytest.raises(interp.InterpError):
        model.hook("nope", 0)
    with pytest.raises(interp.InterpError):
        model.hook("z", 99)


# ------------------------------------------------------------------ TransformerLens habits
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_model_is_callable_like_a_tl_model(family):
    m = tiny_model(family)
    toks = m.to_tokens("hello world")
    ref = m.forward(toks)
    assert torch.equal(m(toks), ref)
    assert torch.equal(m("hello world"), ref)  # the model's BOS policy
    assert torch.equal(m(toks[0]), ref)  # [pos] ids
    # unequal strings: right-padded; every real position matches its own run
    both = m(["hello world", "hi"])
    assert both.shape[:2] == (2, toks.shape[1])
    assert torch.allclose(both[0], ref[0], atol=1e-5)
    short = m("hi")
    assert torch.allclose(both[1, : short.shape[1]], short[0], atol=1e-5)
    assert m.cfg is m.bridge.cfg and m.cfg.n_layers == m.n_layers


def test_run_with_cache_and_hooks_use_the_bos_policy():
    m = tiny_model("gpt2")
    toks = m.to_tokens("abc")
    assert int(toks[0, 0]) == m.bos_token_id
    logits, cache = m.run_with_cache("abc", names_filter=lambda n: n == "blocks.0.hook_resid_post")
    assert torch.allclose(logits, m.forward(toks), atol=1e-5)
    assert cache["blocks.0.hook_resid_post"].shape[:2] == toks.shape
    seen = []
    out = m.run_with_hooks("abc", fwd_hooks=[("blocks.1.hook_resid_post", lambda x, hook: seen.append(x.shape) or x * 0)])
    assert seen == [(1, toks.shape[1], m.d_model)] and not torch.allclose(out, logits)
    assert torch.allclose(m("abc"), logits, atol=1e-5)  # hooks removed afterwards


def test_generate_and_to_string():
    from interp.generate import greedy_generate

    m = tiny_model("gpt2")
    new = greedy_generate(m, ["abc"], max_new_tokens=5, stop_at_eos=False)[0]
    toks = m.generate(m.to_tokens("abc"), max_new_tokens=5, stop_at_eos=False)
    assert toks[0, -5:].tolist() == new
    text = m.generate("abc", max_new_tokens=5, stop_at_eos=False)
    assert text == "abc" + m.tokenizer.decode(new)
    assert m.to_string(toks[0, 1:]) == text and m.to_string(toks[:, 1:]) == [text]
