"""The value side of ROME: v* by gradient steps on a residual delta at the edited MLP's output.

A trainable delta is added to the output-matrix result (``blocks.{L}.mlp.out.hook_out``) at the
subject's last token of every rewriting prompt (the bare prompt and each generated prefix before
it, followed by the new object's tokens) and of the KL prompt ``"{subject} is a"``. The loss is
ROME's:

    L(δ) = mean_c NLL(o* | c + prompt) + kl_factor · KL(P_δ ‖ P₀) + weight_decay · ‖δ‖ / ‖v0‖²

where the KL term compares the next-token distributions read at the subject's last token of the KL
prompt (``lookup_idxs`` in ROME, not the prompt's last token), and δ is projected back onto the ball
‖δ‖ <= ``clamp_norm_factor`` · ‖v0‖ after each step, ``v0 = W k^u + b`` being the output at the
bare prompt. Then ``v* = v0 + δ``. :attr:`VStar.clamp_bound` says whether the projection was
active at the end (‖δ‖ at the clamp radius): the optimum lies outside the ball.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float

from interp.errors import InterpError
from interp.model import Model
from interp.rome.compute_u import value_hook
from interp.rome.requests import EditRequest, subject_last_position
from interp.tail import blocks_from, lm_head, tail_supported

KL_PROMPT = "{} is a"


@dataclass
class VStar:
    """The optimised value of one request.

    Attributes:
        delta: the optimised residual change at the subject's last token.
        v0: ``W k^u + b`` at the bare prompt (ROME's ``target_init``).
        losses: total loss per step.
        nll: the new object's NLL per step.
        steps: steps taken (ROME stops early when the loss falls below ``early_stop_loss``).
        clamp_norm: the clamp radius ``clamp_norm_factor * ||v0||`` (or the prefixed reference's norm).
        prefixed_norm: the mean norm of the output at the subject over the prefixed contexts (nan
            with the bare prompt alone).
    """

    delta: Float[torch.Tensor, "d_model"]
    v0: Float[torch.Tensor, "d_model"]
    losses: list[float] = field(default_factory=list)
    nll: list[float] = field(default_factory=list)
    steps: int = 0
    clamp_norm: float = float("inf")
    prefixed_norm: float = float("nan")

    @property
    def clamp_bound(self) -> bool:
        """Whether ‖δ‖ sits at the clamp radius (within 0.1%): the norm clamp bound the optimum."""
        return bool(float(self.delta.norm()) >= 0.999 * self.clamp_norm)

    @property
    def delta_rel_norm(self) -> float:
        """‖δ‖ / ‖v0‖."""
        return float(self.delta.norm() / self.v0.norm().clamp_min(1e-30))

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


@dataclass
class _TailBatch:
    """Rows split at their subject token: the heads' cache (computed once) and the tails.

    With ``start`` set, the tails' stream entering block ``start`` (the edited layer: nothing before
    its MLP depends on δ) was also computed once, and each step runs only blocks ``start ..``
    (:func:`interp.tail.blocks_from`)."""

    tail: torch.Tensor
    mask: Optional[torch.Tensor]
    cache: Any
    start: Optional[int] = None
    resid: Optional[torch.Tensor] = None
    positions: Optional[torch.Tensor] = None

    def logits_at(self, model: Model, rows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Logits at tail positions ``pos`` of rows ``rows`` (index tensors of one shape), ``[*shape, d_vocab]``:
        only those positions are unembedded on the resumed path."""
        cache = copy.deepcopy(self.cache) if self.cache is not None else None
        if self.start is None:
            kw = {} if cache is None else {"attention_mask": self.mask, "past_key_values": cache}
            return model.bridge(self.tail, **kw)[rows, pos]
        mask = self.mask if self.mask is not None else torch.ones(self.tail.shape, dtype=torch.long)
        h = blocks_from(model, self.resid, mask, self.start, past_key_values=cache, position_ids=self.positions)
        return lm_head(model, h[rows, pos])


def _tail_batch(model: Model, rows: Sequence[Sequence[int]], head: Sequence[int], start: Optional[int] = None) -> _TailBatch:
    """Left-padded heads ``row[:h]`` run once without gradients; right-padded tails ``row[h:]``
    (their blocks before ``start`` run once too when ``start`` is given)."""
    B, H = len(rows), max(head)
    T = max(len(r) - h for r, h in zip(rows, head))
    tail = torch.full((B, T), model.pad_token_id, dtype=torch.long)
    for j, (r, h) in enumerate(zip(rows, head)):
        tail[j, : len(r) - h] = torch.tensor(list(r[h:]))
    tail = tail.to(model.device)
    mask, cache = None, None
    if H:
        ids = torch.full((B, H), model.pad_token_id, dtype=torch.long)
        mask = torch.zeros((B, H + T), dtype=torch.long)
        for j, (r, h) in enumerate(zip(rows, head)):
            if h:
                ids[j, H - h :] = torch.tensor(list(r[:h]))
                mask[j, H - h : H] = 1
            mask[j, H : H + len(r) - h] = 1
        mask = mask.to(model.device)
        with torch.no_grad():
            _, cache = model.bridge(ids.to(model.device), attention_mask=mask[:, :H], return_type="logits_and_cache", logits_to_keep=1)
    if start is None:
        return _TailBatch(tail, mask, cache)
    got: dict[str, torch.Tensor] = {}

    def keep(x, hook):
        got["resid"] = x.detach()
        return x

    kw: dict[str, Any] = {} if cache is None else {"attention_mask": mask, "past_key_values": copy.deepcopy(cache)}
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=[(model.hook("resid_post", start - 1), keep)]):
        model.bridge(tail, logits_to_keep=1, **kw)
    return _TailBatch(tail, mask, cache, start, got["resid"], None if mask is None else _bridge_positions(mask, T))


def _bridge_positions(mask: torch.Tensor, n: int) -> torch.Tensor:
    """The position ids the bridge gives the last ``n`` tokens under ``mask`` (``[batch, cached + n]``):
    counted over attended tokens in a row where padding precedes a real token (the left-padded
    heads), else plain positions."""
    derived = (mask.long().cumsum(1) - 1).clamp_min(0)
    plain = torch.arange(mask.shape[1], device=mask.device).expand_as(derived)
    needs = ((derived != plain) & (mask != 0)).any(1, keepdim=True)
    return torch.where(needs, derived, plain)[:, mask.shape[1] - n :]


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
    prefix_cache: bool = True,
    clamp_reference: str = "bare",
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
        prefix_cache: run the tokens before each row's subject token once and reuse their keys
            and values at every step (they do not depend on δ); the same loss, fewer FLOPs.
        clamp_reference: the output whose norm sets the clamp radius and the weight decay's scale:
            ``"bare"`` (ROME and the released C-ROME code: ``v0`` at the bare prompt) or
            ``"prefixed"`` (the mean norm of the output at the subject over the prefixed contexts,
            ``contexts[1:]``). When the subject is the bare prompt's first token, ``v0`` sits at
            the anomalous first position and is small (SmolLM2: norm about 5 against 22-70 for
            later subjects), so ROME's ball is too small to reach the new object there; the
            prefixed reference measures the scale where the consistent keys are read.

    Returns:
        The optimised :class:`VStar`.
    """
    if not contexts or contexts[0] != "":
        raise InterpError("compute_v needs the bare prompt ('') as its first context")
    if steps < 1 or lr <= 0:
        raise InterpError("compute_v needs steps >= 1 and lr > 0")
    if clamp_reference not in ("bare", "prefixed"):
        raise InterpError(f"clamp_reference must be 'bare' or 'prefixed', not {clamp_reference!r}")
    if clamp_reference == "prefixed" and len(contexts) < 2:
        raise InterpError("clamp_reference='prefixed' needs at least one prefixed context")
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
    n_rw = len(contexts)
    # every position before a row's subject token is untouched by δ: with ``prefix_cache`` those
    # positions run once (their keys and values cached) and each step recomputes only the rest
    head = [p if prefix_cache else 0 for p in lookup]
    # nothing before the edited MLP depends on δ either: where the model's blocks can be resumed
    # (interp.tail), each step runs only blocks ``layer ..`` and unembeds only the scored positions
    resume = layer >= 1 and tail_supported(model)
    batch = _tail_batch(model, rows, head, layer if resume else None)
    dev = model.device
    t_idx = torch.tensor([[p - h + j for j in range(len(target))] for p, h in zip(tgt_pos, head)], device=dev)
    t_ids = torch.tensor(target, device=dev)
    look = torch.tensor([p - h for p, h in zip(lookup, head)], device=dev)
    B = len(rows)
    kl_at = int(look[n_rw])
    # the scored positions: each rewriting row's target positions, and the KL row's subject (padded
    # to the target's length by repeating it; only its first entry is read)
    at_rows = torch.arange(B, device=dev)[:, None].expand(B, len(target))
    at_pos = torch.cat([t_idx, torch.full((1, len(target)), kl_at, device=dev, dtype=t_idx.dtype)])

    delta = torch.zeros(model.d_model, device=dev, dtype=model.dtype, requires_grad=True)
    v0_box: dict[str, torch.Tensor] = {}

    def add_delta(x, hook):
        if "v0" not in v0_box:
            out_at = x[torch.arange(n_rw, device=x.device), look[:n_rw]].detach().float()
            v0_box["v0"] = out_at[0]
            v0_box["prefixed"] = out_at[1:].norm(dim=-1).mean() if n_rw > 1 else torch.tensor(float("nan"))
            v0_box["ref"] = out_at[0].norm() if clamp_reference == "bare" else v0_box["prefixed"]
        x = x.clone()  # (under a mixed-precision policy the MLP's output is in the low dtype, δ in float32)
        x[torch.arange(B, device=x.device), look] = x[torch.arange(B, device=x.device), look] + delta.to(x.dtype)
        return x

    opt = torch.optim.Adam([delta], lr=lr)
    out = VStar(delta=delta.detach(), v0=torch.zeros(model.d_model))
    kl_init = None
    with frozen_weights(model), torch.enable_grad(), model.bridge.hooks(fwd_hooks=[(value_hook(layer), add_delta)]):
        for step in range(steps):
            opt.zero_grad()
            lp = batch.logits_at(model, at_rows, at_pos).float().log_softmax(-1)
            rw = lp[:n_rw]  # [n_rw, target, d_vocab]
            nll = -rw.gather(2, t_ids[None, :, None].expand(n_rw, -1, 1)).squeeze(-1).mean(1).mean()
            kl_lp = lp[n_rw, 0]
            if kl_init is None:
                kl_init = kl_lp.detach().clone()
            kl = F.kl_div(kl_init, kl_lp, log_target=True, reduction="sum")
            ref = v0_box["ref"]
            wd = weight_decay * delta.norm() / ref ** 2
            loss = nll + kl_factor * kl + wd
            out.losses.append(float(loss.detach()))
            out.nll.append(float(nll.detach()))
            out.steps = step + 1
            if out.losses[-1] < early_stop_loss or step == steps - 1:
                break
            loss.backward()
            opt.step()
            with torch.no_grad():
                max_norm = clamp_norm_factor * ref
                if delta.norm() > max_norm:
                    delta.mul_(max_norm / delta.norm())
    out.delta = delta.detach().float().cpu()
    out.v0 = v0_box["v0"].float().cpu()
    out.clamp_norm = float(clamp_norm_factor * v0_box["ref"])
    out.prefixed_norm = float(v0_box["prefixed"])
    return out
