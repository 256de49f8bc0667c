import pytest
import torch

from interp.errors import InterpError
from interp.recall.mlp_decomposition import feeding_heads, fit_mlp_decomposition


def test_fit_recovers_known_activation_and_intercept():
    g = torch.Generator().manual_seed(0)
    n, k, d = 30, 4, 16
    h = torch.randn(n, k, d, generator=g)
    alpha = torch.tensor([2.0, -1.0, 0.0, 0.5])
    beta = torch.randn(d, generator=g)
    m = torch.einsum("i,pid->pd", alpha, h) + beta
    dec = fit_mlp_decomposition(m, h, [(1, i) for i in range(k)], 1, ridge=0.0)
    assert torch.allclose(dec.alpha, alpha, atol=1e-4)
    assert torch.allclose(dec.intercept, beta, atol=1e-4)
    assert dec.r2 == pytest.approx(1.0, abs=1e-6)
    noisy = fit_mlp_decomposition(m + 3 * torch.randn(n, d, generator=g), h, [(1, i) for i in range(k)], 1)
    assert 0.0 < noisy.r2 < 0.9


def test_fit_needs_prompts():
    with pytest.raises(InterpError):
        fit_mlp_decomposition(torch.zeros(1, 4), torch.zeros(1, 2, 4), [(0, 0), (0, 1)], 0)


def test_feeding_heads(tiny_models):
    m = tiny_models["llama"]
    assert feeding_heads(m, 2, [(1, 3), (2, 0)]) == [(1, 3)] + [(2, h) for h in range(m.n_heads)]
