"""The value side of ROME: v* by gradient steps on a residual delta at the edited MLP's output.

A trainable delta is added to the output-matrix result (``blocks.{L}.mlp.out.hook_out``) at the
subject's last token of every rewriting prompt (the bare prompt and each generated prefix before
it, followed by the new object's tokens) and of the KL prompt ``"{subject} is a"``. The loss is
ROME's: the new object's negative log-likelihood, plus ``kl_factor`` times the KL divergence of the
KL prompt's next-token distribution from its unedited value, plus ``weight_decay * ||delta|| /
||v0||^2``; the delta is clamped to ``clamp_norm_factor * ||v0||`` after each step, where
``v0 = W k^u + b`` is the output at the bare prompt. Then ``v* = v0 + delta``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float

from interp.errors import InterpError
from interp.model import Model
from interp.rome.compute_u import value_hook
from interp.rome.requests import EditRequest, subject_last_position

KL_PROMPT = "{} is a"


@dataclass
class VStar:
    """The optimised value of one request.

    Attributes:
        delta: the optimised residual change at the subject's last token.
        v0: ``W k^u + b`` at the bare prompt (ROME's ``target_init``).
        losses: total loss per step.
        nll: the new object's NLL per step.
        steps: steps taken (ROME stops early when the NLL falls below ``early_stop_loss``).
    """

    delta: Float[torch.Tensor, "d_model"]
    v0: Float[torch.Tensor, "d_model"]
    losses: list[float] = field(default_factory=list)
    nll: list[float] = field(default_factory=list)
    steps: int = 0

    @property
    def v_star(self) -> Float[torch.Tensor, "d_model"]:
        return self.v0 + self.delta


@contextmanager
def frozen_weights(model: Model) -> Iterator[None]:
    """Turn off gradients for every weight for the duration (only the delta is trained)."""
    params = list(model.hf_model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def compute_v(
    model: Model,
    request: EditRequest,
    layer: int,
    contexts: Sequence[str] = ("",),
    steps: int = 20,
    lr: float = 0.5,
    kl_factor: float = 0.0625,
    weight_decay: float = 0.5,
    clamp_norm_factor: float = 4.0,
    early_stop_loss: float = 0.05,
    kl_prompt: str = KL_PROMPT,
) -> VStar:
    """Optimise ROME's v* for one request.

    Args:
        model: the model handle.
        request: the edit request.
        layer: the edited MLP layer.
        contexts: texts before the prompt in the rewriting prompts; ``contexts[0]`` must be ``""``
            (the bare prompt, whose output is ``v0``), as in ROME.
        steps: Adam steps (ROME: 20).
        lr: Adam learning rate (ROME: 0.5).
        kl_factor: weight of the KL term on ``kl_prompt`` (ROME: 0.0625).
        weight_decay: weight of ``||delta|| / ||v0||^2`` (ROME: 0.5).
        clamp_norm_factor: clamp ``||delta||`` to this multiple of ``||v0||`` (ROME: 4).
        early_stop_loss: stop once the total loss falls below this (ROME: 0.05).
        kl_prompt: the essence prompt with ``{}`` for the subject.

    Returns:
        The optimised :class:`VStar`.
    """
    if not contexts or contexts[0] != "":
        raise InterpError("compute_v needs the bare prompt ('') as its first context")
    if steps < 1 or lr <= 0:
        raise InterpError("compute_v needs steps >= 1 and lr > 0")
    target = model.encode(request.target_new, prepend_bos=False)
    if not target:
        raise InterpError(f"target {request.target_new!r} has no tokens")
    rows, lookup, tgt_pos = [], [], []
    for c in contexts:
        ids, p = subject_last_position(model, c, request.prompt, request.subject)
        tgt_pos.append(len(ids) - 1)
        rows.append(ids + target[:-1])
        lookup.append(p)
    kl_ids, kl_p = subject_last_position(model, "", kl_prompt, request.subject)
    rows.append(kl_ids)
    lookup.append(kl_p)
    B, S = len(rows), max(len(r) for r in rows)
    ids = torch.full((B, S), model.pad_token_id, dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = torch.tensor(r)
    ids = ids.to(model.device)
    n_rw = len(contexts)
    t_idx = torch.tensor([[p + j for j in range(len(target))] for p in tgt_pos], device=model.device)
    t_ids = torch.tensor(target, device=model.device)
    look = torch.tensor(lookup, device=model.device)
    kl_last = len(kl_ids) - 1

    delta = torch.zeros(model.d_model, device=model.device, dtype=model.dtype, requires_grad=True)
    v0_box: dict[str, torch.Tensor] = {}

    def add_delta(x, hook):
        if "v0" not in v0_box:
            v0_box["v0"] = x[0, look[0]].detach().clone()
        x = x.clone()
        x[torch.arange(B, device=x.device), look] = x[torch.arange(B, device=x.device), look] + delta
        return x

    opt = torch.optim.Adam([delta], lr=lr)
    out = VStar(delta=delta.detach(), v0=torch.zeros(model.d_model))
    kl_init = None
    with frozen_weights(model), torch.enable_grad(), model.bridge.hooks(fwd_hooks=[(value_hook(layer), add_delta)]):
        for step in range(steps):
            opt.zero_grad()
            logits = model.bridge(ids)
            lp = logits.float().log_softmax(-1)
            rw = lp[:n_rw].gather(1, t_idx[:, :, None].expand(-1, -1, lp.shape[-1]))
            nll = -rw.gather(2, t_ids[None, :, None].expand(n_rw, -1, 1)).squeeze(-1).mean(1).mean()
            kl_lp = lp[n_rw, kl_last]
            if kl_init is None:
                kl_init = kl_lp.detach().clone()
            kl = F.kl_div(kl_init, kl_lp, log_target=True, reduction="sum")
            v0 = v0_box["v0"].float()
            wd = weight_decay * delta.norm() / v0.norm() ** 2
            loss = nll + kl_factor * kl + wd
            out.losses.append(float(loss.detach()))
            out.nll.append(float(nll.detach()))
            out.steps = step + 1
            if out.losses[-1] < early_stop_loss or step == steps - 1:
                break
            loss.backward()
            opt.step()
            with torch.no_grad():
                max_norm = clamp_norm_factor * v0.norm()
                if delta.norm() > max_norm:
                    delta.mul_(max_norm / delta.norm())
    out.delta = delta.detach().float().cpu()
    out.v0 = v0_box["v0"].float().cpu()
    return out
