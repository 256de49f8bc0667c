import pytest
import torch

import interp
from interp.errors import InterpError
from interp.rome.compute_u import compute_keys, value_hook
from interp.rome.requests import EditRequest, subject_last_position
from interp.rome.rome_main import ALL_VARIANTS, applied_edit, normalized_denominator, rome_denominator, rome_direction, rome_update

REQ = EditRequest(0, "r", "{} lives in", "Abc", " x", " yz")


def _rand_spd(d, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g)
    return a @ a.T / d + torch.eye(d)


def test_update_algebra():
    d_mlp, d_model = 12, 5
    c_inv = torch.linalg.inv(_rand_spd(d_mlp))
    k_u, k_bar, delta = torch.randn(d_mlp), torch.randn(d_mlp), torch.randn(d_model)
    W = torch.randn(d_model, d_mlp)
    mixed = rome_update(c_inv, k_u, k_bar, delta, W @ k_u, W @ k_bar, "rome")
    torch.testing.assert_close(mixed.delta_w @ k_u, delta, atol=1e-4, rtol=1e-4)
    assert mixed.denominator == pytest.approx(float((c_inv @ k_bar) @ k_u), rel=1e-5)
    cons = rome_update(c_inv, k_u, k_bar, delta, W @ k_u, W @ k_bar, "consistent")
    # released C-ROME: the prefixed key k̄ is mapped onto the target v* = W k^u + δ
    torch.testing.assert_close((W + cons.delta_w) @ k_bar, W @ k_u + delta, atol=1e-4, rtol=1e-4)
    old = rome_update(c_inv, k_u, k_bar, delta, W @ k_u, W @ k_bar, "consistent_delta")
    torch.testing.assert_close(old.delta_w @ k_bar, delta, atol=1e-4, rtol=1e-4)
    assert old.denominator == pytest.approx(cons.denominator)
    u = rome_direction(c_inv, k_bar)
    assert normalized_denominator(u, k_u) == pytest.approx(mixed.denominator / float(u.norm()), rel=1e-5)
    assert cons.denominator > 0
    assert mixed.norm == pytest.approx(float(mixed.delta_w.norm()), rel=1e-4)
    # a key C^-1-orthogonal to k̄ drives the mixed denominator to zero and the update up
    u = rome_direction(c_inv, k_bar)
    k_orth = k_u - (u @ k_u) / (u @ u) * u + 1e-3 * u / u.norm()
    tiny_den = rome_update(c_inv, k_orth, k_bar, delta, W @ k_orth, W @ k_bar, "rome")
    assert abs(rome_denominator(u, k_orth)) < 1e-2 * abs(mixed.denominator)
    assert tiny_den.norm > 50 * mixed.norm
    with pytest.raises(InterpError):
        rome_update(c_inv, k_u, k_bar, delta, W @ k_u, W @ k_bar, "other")


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3", "opt"])
def test_applied_edit_writes_v_star_and_restores(tiny_models, family):
    m = tiny_models[family]
    layer = 1
    keys = compute_keys(m, [REQ], layer, ["Hi. ", "Yo there. "])
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(m.d_model, generator=g)
    c_inv = torch.linalg.inv(_rand_spd(m.d_mlp))
    param, _ = m.mlp_out_parameter(layer)
    saved = param.detach().clone()
    ids, p = subject_last_position(m, "", REQ.prompt, REQ.subject)
    for variant in ALL_VARIANTS:
        up = rome_update(c_inv, keys.k_u[0], keys.k_bar[0], delta, keys.w_k_u[0], keys.w_k_bar[0], variant)
        with applied_edit(m, layer, up):
            assert not torch.equal(param, saved)
            v = interp.capture(m, [ids], hooks=[value_hook(layer)], positions=[[p]]).acts[value_hook(layer)][0, 0]
            if variant == "rome":
                torch.testing.assert_close(v, keys.w_k_u[0] + delta, atol=1e-3, rtol=1e-3)
            else:
                k2 = compute_keys(m, [REQ], layer, ["Hi. ", "Yo there. "])
                want = keys.w_k_bar[0] + delta if variant == "consistent_delta" else keys.w_k_u[0] + delta
                torch.testing.assert_close(k2.w_k_bar[0], want, atol=1e-3, rtol=1e-3)
        assert torch.equal(param, saved)
    with pytest.raises(ValueError):
        with applied_edit(m, layer, up):
            raise ValueError("inside the edit")
    assert torch.equal(param, saved)
