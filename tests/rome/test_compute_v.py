import pytest
import torch

from interp.errors import InterpError
from interp.rome.compute_u import compute_keys
from interp.rome.compute_v import compute_v, frozen_weights
from interp.rome.requests import EditRequest

REQ = EditRequest(0, "r", "{} lives in", "Abc", " x", " yz")


def test_v_star_lowers_the_new_object_nll(tiny):
    m = tiny
    flags = [p.requires_grad for p in m.hf_model.parameters()]
    vs = compute_v(m, REQ, 1, ["", "Hi. "], steps=10, lr=1.0, clamp_norm_factor=100.0)
    assert vs.steps == 10 and len(vs.nll) == 10
    assert vs.nll[-1] < vs.nll[0] - 0.03  # random tiny models saturate; the real model drops by nats
    assert vs.delta.norm() <= 100.0 * vs.v0.norm() + 1e-4
    assert [p.requires_grad for p in m.hf_model.parameters()] == flags
    keys = compute_keys(m, [REQ], 1, ["Hi. "])
    torch.testing.assert_close(vs.v0, keys.w_k_u[0], atol=1e-4, rtol=1e-4)


def test_clamp_and_early_stop(tiny_models):
    m = tiny_models["llama"]
    tight = compute_v(m, REQ, 1, [""], steps=5, lr=5.0, clamp_norm_factor=0.1)
    assert tight.delta.norm() <= 0.1 * tight.v0.norm() + 1e-5
    early = compute_v(m, REQ, 1, [""], steps=5, early_stop_loss=1e9)
    assert early.steps == 1 and torch.count_nonzero(early.delta) == 0


def test_frozen_weights_restores_on_error(tiny_models):
    m = tiny_models["opt"]
    with pytest.raises(RuntimeError):
        with frozen_weights(m):
            assert not any(p.requires_grad for p in m.hf_model.parameters())
            raise RuntimeError("boom")
    assert all(p.requires_grad for p in m.hf_model.parameters())


def test_compute_v_errors(tiny_models):
    m = tiny_models["llama"]
    with pytest.raises(InterpError):
        compute_v(m, REQ, 1, ["Hi. "])
    with pytest.raises(InterpError):
        compute_v(m, REQ, 1, [""], steps=0)


@pytest.mark.real_model
def test_v_star_makes_smollm_state_the_new_object(smollm):
    req = EditRequest(0, "r", "The capital city of {} is", "France", " Paris", " Rome")
    vs = compute_v(smollm, req, 6, [""], steps=20)
    assert vs.nll[-1] < 0.5 * vs.nll[0]


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3", "opt"])
def test_prefix_cache_gives_the_same_optimisation(tiny_models, family):
    """Positions before the subject do not depend on δ: caching them changes nothing but the cost."""
    m = tiny_models[family]
    ctx = ["", "Hi there. ", "The cat sat on the mat. "]
    for req in (REQ, EditRequest(1, "r", "The home of {} is", "Qrs tuv", " x", " y z")):
        a = compute_v(m, req, 1, ctx, steps=4, prefix_cache=False, clamp_norm_factor=100.0)
        b = compute_v(m, req, 1, ctx, steps=4, prefix_cache=True, clamp_norm_factor=100.0)
        torch.testing.assert_close(a.delta, b.delta, atol=1e-4, rtol=1e-3)
        assert a.losses == pytest.approx(b.losses, rel=1e-4)


@pytest.mark.parametrize("family", ["gptj", "gpt_neox", "llama", "gemma3", "qwen2"])
def test_resumed_blocks_give_the_same_optimisation(tiny_models, family, monkeypatch):
    """Each step re-runs only the blocks from the edited layer on (the stream entering it and the
    heads' keys computed once, left-padded heads keeping the bridge's positions) and unembeds only
    the scored positions: the same steps as whole forward passes, for a two-token target too."""
    import interp.rome.compute_v as cv

    m = tiny_models[family]
    ctx = ["", "Hi there. ", "The cat sat on the mat. "]
    for layer in (1, m.n_layers - 1):
        for req in (REQ, EditRequest(1, "r", "The home of {} is", "Qrs tuv", " x", " y z")):
            fast = compute_v(m, req, layer, ctx, steps=4, clamp_norm_factor=100.0)
            with monkeypatch.context() as mp:
                mp.setattr(cv, "tail_supported", lambda model: False)  # whole passes, every logit
                whole = compute_v(m, req, layer, ctx, steps=4, clamp_norm_factor=100.0)
            torch.testing.assert_close(fast.delta, whole.delta, atol=1e-5, rtol=1e-4)
            assert fast.losses == pytest.approx(whole.losses, rel=1e-5)
            assert fast.delta.norm() > 0


def test_clamp_flag(tiny_models):
    m = tiny_models["llama"]
    tight = compute_v(m, REQ, 1, [""], steps=5, lr=5.0, clamp_norm_factor=0.1)
    assert tight.clamp_bound and tight.delta_rel_norm == pytest.approx(0.1, rel=1e-3)
    loose = compute_v(m, REQ, 1, [""], steps=2, lr=1e-3, clamp_norm_factor=100.0)
    assert not loose.clamp_bound and loose.delta_rel_norm < 1


def test_prefixed_clamp_reference_scales_with_the_prefixed_outputs(tiny_models):
    # the clamp radius follows the mean norm of the edited MLP's output at the subject over the
    # prefixed contexts (read with the keys' own pass), not v0 at the bare prompt
    m = tiny_models["llama"]
    ctx = ["", "Hi. ", "Well then, "]
    bare = compute_v(m, REQ, 1, ctx, steps=3, lr=5.0, clamp_norm_factor=0.1)
    pref = compute_v(m, REQ, 1, ctx, steps=3, lr=5.0, clamp_norm_factor=0.1, clamp_reference="prefixed")
    keys = compute_keys(m, [REQ], 1, ctx[1:])
    # w_k_bar is the mean output over the key contexts; its norm bounds the mean of norms from below
    assert pref.clamp_norm >= 0.1 * float(keys.w_k_bar[0].norm()) - 1e-4
    assert bare.clamp_norm == pytest.approx(0.1 * float(bare.v0.norm()), rel=1e-5)
    assert pref.clamp_norm != pytest.approx(bare.clamp_norm, rel=1e-3)
    assert bare.clamp_bound and pref.clamp_bound and float(pref.delta.norm()) == pytest.approx(pref.clamp_norm, rel=1e-3)
    with pytest.raises(InterpError):
        compute_v(m, REQ, 1, [""], clamp_reference="prefixed")
    with pytest.raises(InterpError):
        compute_v(m, REQ, 1, ctx, clamp_reference="other")


@pytest.mark.parametrize("precision", ["mixed", "pure"])
def test_v_star_under_bfloat16_follows_float32(precision):
    """Under ``--dtype bfloat16`` the MLP's output is bf16 while δ is trained in float32 (mixed) or
    bf16 (pure): the delta is cast where it is added, and the optimisation follows the float32 one."""
    from interp.testing import tiny_model

    ref = tiny_model("llama")
    low = tiny_model("llama", dtype=torch.bfloat16, precision=precision)
    ctx = ["", "Hi there. "]
    a = compute_v(ref, REQ, 1, ctx, steps=6, lr=1.0, clamp_norm_factor=100.0)
    b = compute_v(low, REQ, 1, ctx, steps=6, lr=1.0, clamp_norm_factor=100.0)
    assert b.delta.dtype == torch.float32 and b.steps == 6
    assert b.nll == pytest.approx(a.nll, abs=0.02)
    assert float(torch.nn.functional.cosine_similarity(a.delta, b.delta, dim=0)) > 0.98
