"""Direct logit attribution through the final norm with its scale frozen.

The final norm is ``ln(x) = w * P x / s(x) + b`` with ``P`` the identity (RMSNorm) or the mean
removal (LayerNorm), ``s(x) = sqrt(mean((P x)^2) + eps)`` and ``w`` the gain (Gemma's ``1 + w``
included). Holding ``s`` at its value for the whole residual stream ``x`` makes the norm linear, so a
component ``c`` of ``x = sum_i c_i`` contributes ``w * P c / s(x)`` and the contributions plus ``b``
add up to ``ln(x)`` exactly. ``P``, ``w`` and ``b`` are read off the model's own final norm (works for
every family and for the ``tl`` numerics, where ``w`` is folded into ``W_U``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int

from interp.model import Model


@dataclass
class FinalNormLinear:
    """The final norm's pieces: ``centre`` (LayerNorm), gain ``w``, bias ``b``, ``eps``."""

    centre: bool
    w: Float[torch.Tensor, "d_model"]
    b: Float[torch.Tensor, "d_model"]
    eps: float

    def project(self, x: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... d_model"]:
        """``P x``: mean removed for LayerNorm, unchanged for RMSNorm."""
        return x - x.mean(-1, keepdim=True) if self.centre else x

    def scale(self, x: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "..."]:
        """``s(x)``, the norm's divisor for the full residual stream ``x``."""
        return (self.project(x.float()).pow(2).mean(-1) + self.eps).sqrt()

    def apply_frozen(
        self, c: Float[torch.Tensor, "... d_model"], s: Float[torch.Tensor, "..."]
    ) -> Float[torch.Tensor, "... d_model"]:
        """``w * P c / s``: the share of component ``c`` in the normalised stream."""
        return self.project(c.float()) * self.w / s[..., None]


_CACHE: dict[int, FinalNormLinear] = {}


def final_norm_linear(model: Model) -> FinalNormLinear:
    """Read the final norm's centring, gain and bias off the model (cached per model)."""
    key = id(model)
    if key in _CACHE:
        return _CACHE[key]
    d = model.d_model
    eps = float(getattr(model.bridge.cfg, "eps", 1e-5) or 1e-5)
    dev, dt = model.device, model.dtype
    with torch.no_grad():
        b = model.final_norm(torch.zeros(1, d, device=dev, dtype=dt)).float()[0].cpu()
        g = torch.Generator().manual_seed(0)
        r = torch.randn(1, d, generator=g)
        shifted = model.final_norm((r + 3.0).to(dev, dt)).float().cpu()
        plain = model.final_norm(r.to(dev, dt)).float().cpu()
        centre = bool(torch.allclose(shifted, plain, atol=1e-3 * max(1.0, float(plain.abs().max()))))
        pr = r - r.mean(-1, keepdim=True) if centre else r
        s = (pr.pow(2).mean(-1) + eps).sqrt()
        w = ((plain - b) * s[:, None] / pr)[0]
    out = FinalNormLinear(centre, w, b, eps)
    _CACHE[key] = out
    return out


def unembed_directions(model: Model, token_ids: Int[torch.Tensor, "n"]) -> Float[torch.Tensor, "n d_model"]:
    """Columns of ``W_U`` for the tokens, on CPU in float32."""
    return model.W_U.detach()[:, token_ids.to(model.W_U.device)].T.float().cpu()


def direct_logit_attribution(
    model: Model,
    components: Float[torch.Tensor, "n ... d_model"],
    final_resid: Float[torch.Tensor, "n d_model"],
    token_ids: Int[torch.Tensor, "n"],
) -> Float[torch.Tensor, "n ..."]:
    """Each component's direct contribution to the logit of one token per prompt.

    Args:
        model: the model (its final norm and unembedding).
        components: residual-stream writes per prompt (any middle axes: layer, head ...).
        final_resid: each prompt's full residual stream entering the final norm.
        token_ids: the token scored for each prompt.

    Returns:
        The logit contributions, shaped like ``components`` without ``d_model``.
    """
    fn = final_norm_linear(model)
    s = fn.scale(final_resid)
    u = unembed_directions(model, token_ids)
    extra = components.ndim - 2
    s_b = s.reshape(-1, *([1] * extra))
    u_b = u.reshape(u.shape[0], *([1] * extra), u.shape[1])
    return (fn.apply_frozen(components, s_b) * u_b).sum(-1)


def component_logits(
    model: Model, component: Float[torch.Tensor, "... d_model"], s: Float[torch.Tensor, "..."]
) -> Float[torch.Tensor, "... d_vocab"]:
    """The logits a residual-stream write adds over the whole vocabulary (frozen final-norm scale)."""
    fn = final_norm_linear(model)
    return fn.apply_frozen(component, s) @ unembed_float32(model)


_W_U32: dict[tuple[int, int, int], torch.Tensor] = {}


def unembed_float32(model: Model) -> Float[torch.Tensor, "d_model d_vocab"]:
    """``W_U`` on the CPU in float32: the weight itself when it is that already, else one copy kept
    for the latest model and weight version (under the mixed bf16 policy the unembedding is bf16,
    and a fresh float32 copy per call cost Gemma 3's decomposition three times its float32 time)."""
    W = model.W_U.detach()
    if W.dtype == torch.float32 and W.device.type == "cpu":
        return W
    key = (id(model), W.data_ptr(), W._version)
    if key not in _W_U32:
        _W_U32.clear()
        _W_U32[key] = W.float().cpu()
    return _W_U32[key]
