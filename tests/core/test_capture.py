"""The capture engine: padding, shared prefixes, positions, derived hooks, interventions."""

import pytest
import torch

import interp
from interp.errors import InterpError
from interp.testing import TINY_FAMILIES, tiny_model

PROMPTS = ["a", "The quick brown fox", "jumps over the lazy dog today", "hello there"]
HOOKS = ["blocks.1.attn.hook_pattern", "blocks.2.mlp.hook_post", "blocks.0.attn.hook_z", "blocks.2.hook_resid_post"]


def _close(a, b):
    return torch.allclose(a, b, atol=1e-4 * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_padded_batch_equals_single_runs(family):
    model = tiny_model(family)
    batch = interp.capture(model, PROMPTS, hooks=HOOKS, logits=True, batch_size=4)
    for i, p in enumerate(PROMPTS):
        one = interp.capture(model, [p], hooks=HOOKS, logits=True)
        assert _close(batch.logits[i], one.logits[0])
        for h in HOOKS:
            a, b = batch[h][i], one[h][0]
            if h.endswith("hook_pattern"):
                assert torch.all(a[:, b.shape[-1]:] == 0)
                a = a[:, : b.shape[-1]]
            assert _close(a, b), (family, h, i)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_shared_prefix_equals_full_prompts(family):
    model = tiny_model(family)
    prefix = "Repeat the string '"
    suffixes = ["x' now", "yz' now", "w'"]
    full = interp.capture(model, [prefix + s for s in suffixes], hooks=HOOKS, logits=True)
    pre = interp.capture(model, [model.encode(s, prepend_bos=False) for s in suffixes], hooks=HOOKS, prefix=prefix,
                         logits=True, batch_size=2)
    assert pre.tokens == full.tokens
    assert _close(pre.logits, full.logits)
    for h in HOOKS:
        assert _close(pre[h], full[h]), (family, h)


def test_positions_forms_and_all():
    model = tiny_model("llama")
    h = "blocks.2.hook_resid_post"
    every = interp.capture(model, PROMPTS, hooks=[h], positions="all", logits=True)
    assert [t.shape[0] for t in every[h]] == every.lengths.tolist()
    fixed = interp.capture(model, PROMPTS, hooks=[h], positions=[0, -1])
    assert fixed[h].shape == (len(PROMPTS), 2, model.d_model)
    for i in range(len(PROMPTS)):
        assert _close(fixed[h][i, 0], every[h][i][0]) and _close(fixed[h][i, 1], every[h][i][-1])
    per = interp.capture(model, PROMPTS, hooks=[h], positions=[[0]] * len(PROMPTS))
    assert _close(per[h][:, 0], fixed[h][:, 0])
    pats = interp.capture(model, PROMPTS, hooks=["blocks.0.attn.hook_pattern"], positions="all")
    L = every.lengths[1]
    assert pats["blocks.0.attn.hook_pattern"][1].shape == (L, model.n_heads, L)


def test_every_position_hooks_come_from_the_same_passes():
    model = tiny_model("llama")
    h, late = "blocks.1.hook_resid_post", "blocks.2.hook_resid_post"
    prefix = "Repeat the string '"
    conts = [model.encode(s, prepend_bos=False) for s in ["x' now", "yz' now and then", "w'"]]
    ref = interp.capture(model, conts, hooks=[h], positions="all", prefix=prefix)
    got = interp.capture(model, conts, hooks=[h, late], positions="last", prefix=prefix, logits=True, batch_size=2,
                         every_position=[h])
    for i, c in enumerate(conts):  # every position after the prefix, beside the last-position values
        assert got.every[h][i].shape == (len(c), model.d_model)
        assert _close(got.every[h][i], ref[h][i])
        assert _close(got[h][i], ref[h][i][-1])
    alone = interp.capture(model, conts, prefix=prefix, every_position=[h])  # stops after block 1
    assert alone.acts == {} and all(_close(a, b) for a, b in zip(alone.every[h], ref[h]))
    with pytest.raises(InterpError, match="every_position takes"):
        interp.capture(model, conts, prefix=prefix, every_position=["blocks.0.attn.hook_pattern"])


def test_bad_positions_and_hooks():
    model = tiny_model("gpt2")
    with pytest.raises(InterpError, match="outside the sequence"):
        interp.capture(model, ["ab"], hooks=["blocks.0.hook_resid_pre"], positions=10)
    with pytest.raises(InterpError, match="inside the shared prefix"):
        interp.capture(model, ["ab"], hooks=["blocks.0.hook_resid_pre"], positions=0, prefix="xyz")
    with pytest.raises(InterpError, match="no hook named"):
        interp.capture(model, ["ab"], hooks=["blocks.0.attn.hook_nothing"])
    with pytest.raises(InterpError, match="list of prompts"):
        interp.capture(model, "ab", hooks=[])


def test_opt_pattern_derived_reproduces_attention_output():
    """OPT's bridge never fires hook_pattern; the derived pattern times V gives the real hook_z."""
    model = tiny_model("opt")
    assert not model.has_pattern_hook
    hooks = [f"blocks.{L}.attn.hook_{w}" for L in range(3) for w in ("pattern", "v", "z")]
    c = interp.capture(model, PROMPTS[1:], hooks=hooks, positions="all")
    for i in range(len(PROMPTS) - 1):
        for L in range(3):
            pat = c[f"blocks.{L}.attn.hook_pattern"][i]  # [q, head, k]
            v, z = c[f"blocks.{L}.attn.hook_v"][i], c[f"blocks.{L}.attn.hook_z"][i]
            assert _close(torch.einsum("qhk,khd->qhd", pat, v), z), (i, L)
            assert torch.all(pat.transpose(0, 1).triu(1) == 0)  # causal: no weight on later keys
    last = interp.capture(model, PROMPTS[1:], hooks=["blocks.2.attn.hook_pattern"])
    for i in range(len(PROMPTS) - 1):
        n = int(last.lengths[i])
        assert _close(last["blocks.2.attn.hook_pattern"][i, :, :n], c["blocks.2.attn.hook_pattern"][i][-1])
    pre = interp.capture(model, [model.encode(" dog today", prepend_bos=False)], hooks=["blocks.1.attn.hook_pattern"],
                         prefix="jumps over the lazy")
    full = interp.capture(model, ["jumps over the lazy dog today"], hooks=["blocks.1.attn.hook_pattern"])
    assert _close(pre["blocks.1.attn.hook_pattern"], full["blocks.1.attn.hook_pattern"])


def test_interventions_see_current_batch_and_compose():
    model = tiny_model("llama")
    h = "blocks.2.hook_resid_post"
    seen = []

    def zero_last_mlp(x, hook):
        info = interp.current_batch()
        seen.append(info.last.tolist())
        x = x.clone()
        x[torch.arange(x.shape[0]), info.last] = 0
        return x

    with model.hooks([("blocks.2.hook_mlp_out", zero_last_mlp)]):
        abl = interp.capture(model, PROMPTS, hooks=[h, "blocks.1.hook_resid_post"], batch_size=2)
    base = interp.capture(model, PROMPTS, hooks=[h, "blocks.1.hook_resid_post", "blocks.2.hook_resid_mid"], batch_size=2)
    assert seen and all(len(s) == 2 for s in seen)
    assert _close(abl[h], base["blocks.2.hook_resid_mid"])  # resid_post = resid_mid + mlp_out, mlp_out zeroed
    assert _close(abl["blocks.1.hook_resid_post"], base["blocks.1.hook_resid_post"])
    assert interp.current_batch() is None


def test_stop_at_layer_matches_full_run():
    model = tiny_model("gpt_neox")
    a = interp.capture(model, PROMPTS, hooks=["blocks.0.mlp.hook_post"], stop_at_layer=1)
    b = interp.capture(model, PROMPTS, hooks=["blocks.0.mlp.hook_post"])
    assert _close(a["blocks.0.mlp.hook_post"], b["blocks.0.mlp.hook_post"])
    with pytest.raises(InterpError):
        interp.capture(model, PROMPTS, hooks=["blocks.2.mlp.hook_post"], stop_at_layer=1)


@pytest.mark.real_model
def test_real_model_padding_and_prefix(smollm):
    prompts = ["The capital of France is", "As we all know, the capital of Japan is", "Paris is in"]
    hooks = ["blocks.15.attn.hook_pattern", "blocks.29.mlp.hook_post"]
    batch = interp.capture(smollm, prompts, hooks=hooks, logits=True)
    assert [smollm.tokenizer.decode(int(t)) for t in batch.logits[:2].argmax(-1)] == [" Paris", " Tokyo"]
    for i, p in enumerate(prompts):
        one = interp.capture(smollm, [p], hooks=hooks, logits=True)
        assert _close(batch.logits[i], one.logits[0])
    pre = interp.capture(smollm, [" France is", " Japan is"], hooks=hooks, prefix="The capital of", logits=True)
    full = interp.capture(smollm, ["The capital of France is", "The capital of Japan is"], hooks=hooks, logits=True)
    assert _close(pre.logits, full.logits) and _close(pre[hooks[0]], full[hooks[0]])
