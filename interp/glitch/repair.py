"""GlitchProber's repair: restore the key neurons of the key layers at the last position.

From normal tokens, at each key layer and the prompt's last position, two groups of MLP neurons
are found: *always active* (activation above ``threshold`` on more than ``always_share`` of normal
tokens) and *never active* (at or below ``threshold`` on every normal token). During generation the
repair hooks act at the last position only: an always-active neuron that a glitch token leaves at or
below the threshold is raised to ``|x| + beta``; a never-active neuron that a glitch token pushes
above it is damped to ``x / alpha``. GlitchProber's own rule sets ``alpha`` and ``beta`` from the
glitch-vs-normal activation gap (per neuron here); its rule-based baseline uses ``alpha = 4`` and
``beta = 1.5`` everywhere.

The hooks go through ``model.hooks(...)``, so they apply to :func:`interp.greedy_generate` (where
the last position is ``-1``: rows are left-padded) and to :func:`interp.capture` (where each row's
last position comes from :func:`interp.current_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from jaxtyping import Float

from interp.capture import capture, current_batch
from interp.errors import InterpError
from interp.glitch.oracle import RepeatTemplate, repeat_template
from interp.model import Model

REPAIR_HOOK_KIND = "mlp_post"


@dataclass
class KeyNeurons:
    """The neurons a repair touches at one layer, with their per-neuron strengths.

    Attributes:
        layer: the layer.
        always: indices of always-active neurons.
        never: indices of never-active neurons.
        beta: ``[len(always)]`` amount added to ``|x|`` of a silent always-active neuron.
        alpha: ``[len(never)]`` divisor of a firing never-active neuron.
    """

    layer: int
    always: np.ndarray
    never: np.ndarray
    beta: np.ndarray
    alpha: np.ndarray


@dataclass
class RepairPlan:
    """Key neurons of every key layer, the hook kind they live on and the activation threshold."""

    neurons: list[KeyNeurons]
    kind: str = REPAIR_HOOK_KIND
    threshold: float = 1.0

    @property
    def n_always(self) -> int:
        return int(sum(len(k.always) for k in self.neurons))

    @property
    def n_never(self) -> int:
        return int(sum(len(k.never) for k in self.neurons))

    def rule_based(self, alpha: float = 4.0, beta: float = 1.5) -> "RepairPlan":
        """The same neurons with GlitchProber's fixed rule-based strengths."""
        return RepairPlan([KeyNeurons(k.layer, k.always, k.never, np.full(len(k.always), beta, dtype=np.float32),
                                      np.full(len(k.never), alpha, dtype=np.float32)) for k in self.neurons],
                          self.kind, self.threshold)


def neuron_activations(
    model: Model,
    token_ids: Sequence[int],
    layers: Sequence[int],
    *,
    kind: str = REPAIR_HOOK_KIND,
    template: Optional[RepeatTemplate] = None,
    batch_size: int = 128,
    progress: Optional[bool] = None,
) -> dict[int, Float[np.ndarray, "n d_mlp"]]:
    """MLP neuron activations at the oracle prompt's last position, per layer.

    Args:
        model: the model handle.
        token_ids: the probed tokens.
        layers: layers to read.
        kind: hook kind (``mlp_post``: the values the MLP's output matrix reads).
        template: the oracle prompt.
        batch_size: rows per forward pass.
        progress: show a progress bar.

    Returns:
        ``layer -> [n, d_mlp]``.
    """
    tpl = template or repeat_template(model)
    names = {L: model.hook(kind, L) for L in layers}
    if any(v is None for v in names.values()):
        raise InterpError(f"{model.spec} has no {kind} hook")
    cap = capture(model, [tpl.row(t) for t in token_ids], hooks=list(names.values()), positions="last",
                  prefix=list(tpl.prefix_ids), batch_size=batch_size, progress=progress, desc="repair neurons",
                  stop_at_layer=max(layers) + 1, dtype=torch.float32)
    return {L: cap.acts[h].numpy() for L, h in names.items()}


def key_neurons(
    normal: dict[int, Float[np.ndarray, "n d_mlp"]],
    glitch: dict[int, Float[np.ndarray, "m d_mlp"]],
    *,
    threshold: float = 1.0,
    always_share: float = 0.99,
    kind: str = REPAIR_HOOK_KIND,
) -> RepairPlan:
    """Find always-active and never-active neurons on normal tokens and size their repair from the gap.

    ``beta`` of an always-active neuron is the gap between its mean activation on normal and on
    glitch tokens (at least 0); ``alpha`` of a never-active neuron is the factor that brings its
    mean activation on the glitch tokens that fire it back to the threshold (at least 1).

    Args:
        normal: ``layer -> [n, d_mlp]`` activations of normal tokens.
        glitch: ``layer -> [m, d_mlp]`` activations of glitch tokens.
        threshold: activation above which a neuron is active.
        always_share: share of normal tokens on which an always-active neuron must be active.
        kind: the hook kind the activations came from.

    Returns:
        The :class:`RepairPlan`.
    """
    if set(normal) != set(glitch):
        raise InterpError("normal and glitch activations must cover the same layers")
    out = []
    for L in sorted(normal):
        xn, xg = np.asarray(normal[L], np.float32), np.asarray(glitch[L], np.float32)
        if len(xn) == 0 or len(xg) == 0:
            raise InterpError("key neurons need both normal and glitch tokens")
        active = xn > threshold
        always = np.flatnonzero(active.mean(axis=0) > always_share)
        never = np.flatnonzero(~active.any(axis=0))
        beta = np.maximum(xn[:, always].mean(axis=0) - xg[:, always].mean(axis=0), 0.0)
        fired = xg[:, never] > threshold
        mean_fired = np.where(fired.any(axis=0), (xg[:, never] * fired).sum(axis=0) / np.maximum(fired.sum(axis=0), 1), threshold)
        alpha = np.maximum(mean_fired / threshold, 1.0)
        out.append(KeyNeurons(L, always, never, beta.astype(np.float32), alpha.astype(np.float32)))
    return RepairPlan(out, kind, threshold)


def _repair_fn(k: KeyNeurons, threshold: float) -> Callable:
    always = torch.as_tensor(k.always, dtype=torch.long)
    never = torch.as_tensor(k.never, dtype=torch.long)
    beta = torch.as_tensor(k.beta)
    alpha = torch.as_tensor(k.alpha)

    def repair(x: torch.Tensor, hook) -> torch.Tensor:
        info = current_batch()
        if info is not None and info.phase == "prefix":
            return x  # the shared template prefix: its last token is not the prompt's
        rows = torch.arange(x.shape[0], device=x.device)
        last = info.last.to(x.device) if info is not None else torch.full_like(rows, x.shape[1] - 1)
        v = x[rows, last]
        if len(always):
            a = v[:, always.to(x.device)]
            b = beta.to(x.device, x.dtype).expand_as(a)
            v[:, always.to(x.device)] = torch.where(a <= threshold, a.abs() + b, a)
        if len(never):
            n = v[:, never.to(x.device)]
            al = alpha.to(x.device, x.dtype).expand_as(n)
            v[:, never.to(x.device)] = torch.where(n > threshold, n / al, n)
        x = x.clone()
        x[rows, last] = v
        return x

    return repair


def repair_hooks(model: Model, plan: RepairPlan) -> list[tuple[str, Callable]]:
    """Forward hooks that apply a repair plan at the last position; use with ``model.hooks(...)``.

    Args:
        model: the model handle.
        plan: from :func:`key_neurons` (or its :meth:`RepairPlan.rule_based`).

    Returns:
        ``[(hook_name, fn), ...]``.
    """
    hooks = []
    for k in plan.neurons:
        name = model.hook(plan.kind, k.layer)
        if name is None:
            raise InterpError(f"{model.spec} has no {plan.kind} hook")
        hooks.append((name, _repair_fn(k, plan.threshold)))
    return hooks
