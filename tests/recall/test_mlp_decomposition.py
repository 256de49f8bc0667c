import pytest
import torch

from interp.errors import InterpError
from interp.recall.mlp_decomposition import (cross_validate, feeding_heads, fit_mlp_decomposition, folds,
                                             task_specificity_auc)


def test_fit_recovers_known_activation_and_intercept():
    g = torch.Generator().manual_seed(0)
    n, k, d = 30, 4, 16
    h = torch.randn(n, k, d, generator=g)
    alpha = torch.tensor([2.0, -1.0, 0.0, 0.5])
    beta = torch.randn(d, generator=g)
    m = torch.einsum("i,pid->pd", alpha, h - h.mean(0)) + beta
    dec = fit_mlp_decomposition(m, h, [(1, i) for i in range(k)], 1, ridge=0.0)
    assert torch.allclose(dec.alpha, alpha, atol=1e-4)
    assert torch.allclose(dec.intercept, beta, atol=1e-4)
    assert dec.r2 == pytest.approx(1.0, abs=1e-6)
    noisy = fit_mlp_decomposition(m + 3 * torch.randn(n, d, generator=g), h, [(1, i) for i in range(k)], 1)
    assert 0.0 < noisy.r2 < 0.9


def test_intercept_is_identified_when_a_head_is_nearly_constant():
    """A head that barely varies is collinear with the intercept: the uncentred intercept swings
    across folds, the centred one is the task mean and stays put."""
    g = torch.Generator().manual_seed(1)
    n, d = 40, 32
    const = torch.randn(d, generator=g) * 5
    h_const = const + 1e-3 * torch.randn(n, d, generator=g)  # nearly constant head
    h_var = torch.randn(n, d, generator=g)
    h = torch.stack([h_var, h_const], 1)
    beta = torch.randn(d, generator=g)
    m = 0.7 * h_var + beta + 0.5 * torch.randn(n, d, generator=g)
    cv = cross_validate(m, h, [(1, 0), (1, 1)], 1, k=5, ridge=0.0)
    assert cv.intercept_cosine > 0.99 and cv.intercept_spread < 0.1
    assert cv.uncentred_intercept_spread > 2 * cv.intercept_spread
    dec = fit_mlp_decomposition(m, h, [(1, 0), (1, 1)], 1, ridge=0.0)
    assert torch.allclose(dec.intercept, m.mean(0), atol=1e-5)
    assert dec.intercept_share <= 1.0 + 1e-6
    assert 0.0 < cv.r2_cv < dec.r2


def test_folds_cover_every_prompt_once():
    fs = folds(12, 5)
    assert sorted(torch.cat(fs).tolist()) == list(range(12)) and len(fs) == 5
    assert len(folds(3, 5)) == 3


def test_task_specificity_auc():
    logits = torch.tensor([5.0, 4.0, 1.0, 0.0, 3.0])
    assert task_specificity_auc(logits, [0, 1], [2, 3]) == 1.0
    assert task_specificity_auc(logits, [2, 3], [0, 1]) == 0.0
    assert task_specificity_auc(logits, [0, 2], [1, 3]) == 0.75
    # shared answers are left out of the other tasks' set; ties count half
    assert task_specificity_auc(logits, [4], [4, 1]) == 0.0
    assert task_specificity_auc(torch.zeros(3), [0], [1]) == 0.5
    assert task_specificity_auc(logits, [1], [1]) != task_specificity_auc(logits, [1], [1])  # NaN


def test_fit_needs_prompts():
    with pytest.raises(InterpError):
        fit_mlp_decomposition(torch.zeros(1, 4), torch.zeros(1, 2, 4), [(0, 0), (0, 1)], 0)


def test_feeding_heads(tiny_models):
    m = tiny_models["llama"]
    assert feeding_heads(m, 2, [(1, 3), (2, 0)]) == [(1, 3)] + [(2, h) for h in range(m.n_heads)]
