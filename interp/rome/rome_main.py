"""The rank-one update of ROME, in the key variants of Yang et al. (2024), and applying it.

With u = C^-1 k̄ (the prefixed key whitened by the key second moment; C = I in the released C-ROME
configuration) and δ the optimised output change of :func:`interp.rome.compute_v.compute_v`,
v* = W k^u + δ:

* ``rome`` (the released ROME code, mixed keys): ΔW = (v* - W k^u) u^T / (u^T k^u);
* ``consistent`` (C-ROME as released by Yang et al.: the target is still v* = W k^u + δ, the key
  is k̄ in the denominator and the direction, and the current output is W k̄):
  ΔW = (v* - W k̄) u^T / (u^T k̄);
* ``consistent_prefix``: the ``consistent`` ΔW with a random prefix from the generated set put
  before every prompt at test time, so the key the model meets matches the one it was edited on;
* ``consistent_delta`` (this project's earlier variant, kept for comparison only; not in the
  default run): the target moved to W k̄ + δ, so ΔW = δ u^T / (u^T k̄).

The denominator u^T k^u is what collapses when k^u is a first-token key; u^T k̄ is a positive
quadratic form of k̄. The paper-comparable size is ROME's own: the code normalises u to unit norm,
so the denominator it divides by (and Yang et al. tabulate) is (C^-1 k̄)^T k / ‖C^-1 k̄‖
(:func:`normalized_denominator`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from jaxtyping import Float

from interp.errors import InterpError
from interp.model import Model

VARIANTS = ("rome", "consistent", "consistent_prefix")
ALL_VARIANTS = VARIANTS + ("consistent_delta",)


@dataclass
class RankOneUpdate:
    """ΔW = numerator ⊗ u / denominator, in the residual-from-hidden layout ``[d_model, d_mlp]``."""

    numerator: Float[torch.Tensor, "d_model"]
    u: Float[torch.Tensor, "d_mlp"]
    denominator: float
    variant: str

    @property
    def delta_w(self) -> Float[torch.Tensor, "d_model d_mlp"]:
        return torch.outer(self.numerator, self.u) / self.denominator

    @property
    def norm(self) -> float:
        """||ΔW||_F, computed without forming the matrix."""
        return float(self.numerator.norm() * self.u.norm() / abs(self.denominator))


def rome_direction(c_inv: Float[torch.Tensor, "d_mlp d_mlp"], k_bar: Float[torch.Tensor, "d_mlp"]) -> Float[torch.Tensor, "d_mlp"]:
    """u = C^-1 k̄, the direction in key space that the edit writes along."""
    return (c_inv.double() @ k_bar.double()).float()


def rome_denominator(u: Float[torch.Tensor, "d_mlp"], k: Float[torch.Tensor, "d_mlp"]) -> float:
    """u^T k: with k = k^u the mixed-key denominator, with k = k̄ its consistent counterpart."""
    return float(u.double() @ k.double())


def normalized_denominator(u: Float[torch.Tensor, "d_mlp"], k: Float[torch.Tensor, "d_mlp"]) -> float:
    """(C^-1 k̄)^T k / ‖C^-1 k̄‖: the denominator with ROME's unit-norm u (the paper's quantity)."""
    return rome_denominator(u, k) / float(u.double().norm())


def rome_update(
    c_inv: Float[torch.Tensor, "d_mlp d_mlp"],
    k_u: Float[torch.Tensor, "d_mlp"],
    k_bar: Float[torch.Tensor, "d_mlp"],
    delta: Float[torch.Tensor, "d_model"],
    w_k_u: Float[torch.Tensor, "d_model"],
    w_k_bar: Float[torch.Tensor, "d_model"],
    variant: str = "rome",
) -> RankOneUpdate:
    """The ROME update of one request in one key variant.

    Args:
        c_inv: inverse key second moment at the layer.
        k_u: unprefixed key.
        k_bar: prefixed (averaged) key.
        delta: the optimised output change δ (``v* = v0 + δ``).
        w_k_u: ``W k^u + b``, the output at the bare prompt (``v0``).
        w_k_bar: ``W k̄ + b``.
        variant: one of :data:`ALL_VARIANTS` (see the module docstring).

    Returns:
        The update's factors.
    """
    if variant not in ALL_VARIANTS:
        raise InterpError(f"unknown ROME variant {variant!r}; one of {ALL_VARIANTS}")
    u = rome_direction(c_inv, k_bar)
    if variant == "rome":
        v_star, k, w_k = w_k_u + delta, k_u, w_k_u
    elif variant == "consistent_delta":
        v_star, k, w_k = w_k_bar + delta, k_bar, w_k_bar
    else:
        v_star, k, w_k = w_k_u + delta, k_bar, w_k_bar
    den = rome_denominator(u, k)
    if den == 0.0:
        raise InterpError("the ROME denominator is exactly zero; the key is orthogonal to C^-1 k̄")
    return RankOneUpdate((v_star - w_k).float(), u, den, variant)


@contextmanager
def applied_edit(model: Model, layer: int, update: RankOneUpdate) -> Iterator[Model]:
    """Add ΔW to the MLP output matrix of ``layer`` for the block; the weights are restored on
    exit, also when the block raises.

    Args:
        model: the model handle (edited in place).
        layer: the MLP layer.
        update: the rank-one update.

    Yields:
        The edited model.
    """
    param, transposed = model.mlp_out_parameter(layer)
    dw = update.delta_w.to(param.device, param.dtype)
    if transposed:
        dw = dw.T
    if tuple(dw.shape) != tuple(param.shape):
        raise InterpError(f"ΔW has shape {tuple(dw.shape)} but the MLP output weight is {tuple(param.shape)}")
    saved = param.detach().clone()
    try:
        with torch.no_grad():
            param.add_(dw)
        yield model
    finally:
        with torch.no_grad():
            param.copy_(saved)
