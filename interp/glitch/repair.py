"""GlitchProber's repair: rescale the key neurons of the gate and up projections at the last position.

As in the paper and its released code, the repair hooks two places of every key layer's MLP
separately: the gate pre-activation (``mlp.hook_pre``) and the up projection (``mlp.hook_pre_linear``).
For each of the two, from a fitting sample of *normal* tokens at the oracle prompt's last position:

- *always-active* neurons are above the threshold ``m`` on more than ``always_share`` of the normal
  tokens; the repair sets every one of them to ``|x| + beta`` (all of them, as the code does);
- *never-active* neurons are at or below ``m`` on every normal token; the repair divides those a
  glitch token pushes above ``m`` by ``alpha``.

The strengths come from the paper's formulas, one pair per hook kind, with the gaps measured between
normal and glitch tokens of the fitting split (:func:`repair_strengths`)::

    delta_up   = mean over key layers of mean over always-active neurons (mean_normal - mean_glitch)
    ratio_down = mean over key layers of mean over never-active neurons  (mean_glitch / mean_normal)
    beta  = clamp(0.5 + 25 * delta_up, 0, 3)
    alpha = clamp(2 * |ratio_down|, 2, 5)

The rule-based baseline uses ``alpha = 4`` and ``beta = 1.5`` on the same neurons. The paper's
threshold ``m = 1`` is on the scale of a 7B model's activations; here ``m`` is set per hook kind
from the fitting sample (:func:`activation_thresholds`: a multiple of the activations' RMS, default
1), or given as a number.

The hooks go through ``model.hooks(...)``, so they apply to :func:`interp.greedy_generate` (where
the last position is ``-1``: rows are left-padded) and to :func:`interp.capture` (where each row's
last position comes from :func:`interp.current_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from jaxtyping import Float

from interp.capture import capture, current_batch
from interp.errors import InterpError
from interp.glitch.oracle import RepeatTemplate, repeat_template
from interp.model import Model

REPAIR_HOOK_KINDS = ("mlp_gate", "mlp_data")
BETA_FORMULA = (0.5, 25.0, 0.0, 3.0)  # beta = clamp(b + k * delta_up, lo, hi)
ALPHA_FORMULA = (0.0, 2.0, 2.0, 5.0)  # alpha = clamp(b + k * |ratio_down|, lo, hi)

Acts = dict[tuple[str, int], Float[np.ndarray, "n d_mlp"]]


@dataclass
class KeyNeurons:
    """The neurons a repair touches at one hook (kind, layer).

    Attributes:
        kind: ``mlp_gate`` or ``mlp_data``.
        layer: the layer.
        always: indices of always-active neurons (set to ``|x| + beta``).
        never: indices of never-active neurons (divided by ``alpha`` when above the threshold).
    """

    kind: str
    layer: int
    always: np.ndarray
    never: np.ndarray


@dataclass
class RepairPlan:
    """Key neurons of every key layer and hook kind, with per-kind threshold and strengths."""

    neurons: list[KeyNeurons]
    thresholds: dict[str, float]
    alpha: dict[str, float]
    beta: dict[str, float]
    gaps: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def n_always(self) -> int:
        return int(sum(len(k.always) for k in self.neurons))

    @property
    def n_never(self) -> int:
        return int(sum(len(k.never) for k in self.neurons))

    def counts(self) -> dict[str, int]:
        """Always/never-active neuron counts per hook kind."""
        out: dict[str, int] = {}
        for k in self.neurons:
            out[f"{k.kind}_always"] = out.get(f"{k.kind}_always", 0) + len(k.always)
            out[f"{k.kind}_never"] = out.get(f"{k.kind}_never", 0) + len(k.never)
        return out

    def rule_based(self, alpha: float = 4.0, beta: float = 1.5) -> "RepairPlan":
        """The same neurons with GlitchProber's fixed rule-based strengths."""
        return RepairPlan(self.neurons, dict(self.thresholds), {k: float(alpha) for k in self.alpha},
                          {k: float(beta) for k in self.beta}, self.gaps)


def neuron_activations(
    model: Model,
    token_ids: Sequence[int],
    layers: Sequence[int],
    *,
    kinds: Sequence[str] = REPAIR_HOOK_KINDS,
    template: Optional[RepeatTemplate] = None,
    batch_size: int = 128,
    progress: Optional[bool] = None,
) -> Acts:
    """Gate and up-projection activations at the oracle prompt's last position.

    Args:
        model: the model handle.
        token_ids: the probed tokens.
        layers: layers to read.
        kinds: hook kinds (``mlp_gate``: ``mlp.hook_pre``; ``mlp_data``: ``mlp.hook_pre_linear``,
            skipped for non-gated MLPs, which have no up projection apart from the pre-activation).
        template: the oracle prompt.
        batch_size: rows per forward pass.
        progress: show a progress bar.

    Returns:
        ``(kind, layer) -> [n, d_mlp]``.
    """
    tpl = template or repeat_template(model)
    names = {(k, L): model.hook(k, L) for k in kinds for L in layers}
    names = {key: h for key, h in names.items() if h is not None}
    if not names:
        raise InterpError(f"{model.spec} has none of the hooks {list(kinds)}")
    cap = capture(model, [tpl.row(t) for t in token_ids], hooks=list(names.values()), positions="last",
                  prefix=list(tpl.prefix_ids), batch_size=batch_size, progress=progress, desc="repair neurons",
                  stop_at_layer=max(layers) + 1, dtype=torch.float32)
    return {key: cap.acts[h].reshape(len(token_ids), -1).numpy() for key, h in names.items()}


def activation_thresholds(normal: Acts, scale: Union[str, float] = "rms") -> dict[str, float]:
    """The activation threshold ``m`` of each hook kind.

    Args:
        normal: activations of the fitting normal tokens.
        scale: ``"rms"`` (m = the RMS of the kind's activations over key layers and tokens),
            ``"<f>rms"`` (f times it), or a number (the same m for every kind, as the paper's 1).

    Returns:
        kind -> m.
    """
    kinds = sorted({k for k, _ in normal})
    if isinstance(scale, (int, float)) or not str(scale).endswith("rms"):
        try:
            m = float(scale)
        except ValueError as e:
            raise InterpError(f"repair threshold must be a number, 'rms' or '<f>rms', not {scale!r}") from e
        return {k: m for k in kinds}
    f = float(str(scale)[:-3] or 1.0)
    out = {}
    for k in kinds:
        x = np.concatenate([v.ravel() for (kk, _), v in normal.items() if kk == k])
        out[k] = float(f * np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return out


def key_neuron_sets(normal: Acts, thresholds: dict[str, float], always_share: float = 0.99) -> list[KeyNeurons]:
    """Always-active and never-active neurons of every hook from normal tokens only."""
    out = []
    for (kind, L) in sorted(normal):
        active = np.asarray(normal[(kind, L)]) > thresholds[kind]
        if len(active) == 0:
            raise InterpError("key neurons need normal tokens")
        out.append(KeyNeurons(kind, L, np.flatnonzero(active.mean(axis=0) > always_share), np.flatnonzero(~active.any(axis=0))))
    return out


def _clamp(x: float, lo: float, hi: float) -> float:
    return float(min(hi, max(lo, x)))


def repair_strengths(normal: Acts, glitch: Acts, neurons: Sequence[KeyNeurons]) -> tuple[dict, dict, dict]:
    """The paper's ``alpha`` and ``beta`` per hook kind (see module docstring) and the gaps they come from.

    Returns:
        ``(alpha, beta, gaps)`` with ``gaps[kind] = {"delta_up": ..., "ratio_down": ...}``.
    """
    alpha, beta, gaps = {}, {}, {}
    for kind in sorted({k.kind for k in neurons}):
        ups, downs = [], []
        for k in (k for k in neurons if k.kind == kind):
            xn, xg = np.asarray(normal[(kind, k.layer)]), np.asarray(glitch[(kind, k.layer)])
            if len(xg) == 0:
                raise InterpError("the repair's strengths need glitch tokens in the fitting split")
            if len(k.always):
                ups.append(float(np.mean(xn[:, k.always].mean(0) - xg[:, k.always].mean(0))))
            if len(k.never):
                mn = xn[:, k.never].mean(0)
                downs.append(float(np.mean(xg[:, k.never].mean(0) / np.where(np.abs(mn) < 1e-8, 1e-8, mn))))
        d_up = float(np.mean(ups)) if ups else 0.0
        r_down = float(np.mean(downs)) if downs else 0.0
        b0, kb, lo_b, hi_b = BETA_FORMULA
        a0, ka, lo_a, hi_a = ALPHA_FORMULA
        beta[kind] = _clamp(b0 + kb * d_up, lo_b, hi_b)
        alpha[kind] = _clamp(a0 + ka * abs(r_down), lo_a, hi_a)
        gaps[kind] = {"delta_up": d_up, "ratio_down": r_down}
    return alpha, beta, gaps


def key_neurons(
    normal: Acts,
    glitch: Acts,
    *,
    threshold: Union[str, float] = "rms",
    always_share: float = 0.99,
) -> RepairPlan:
    """Fit the repair: thresholds and neuron sets from normal tokens, strengths from the normal/glitch gap.

    Args:
        normal: ``(kind, layer) -> [n, d_mlp]`` activations of the fitting split's normal tokens.
        glitch: the same for its glitch tokens.
        threshold: see :func:`activation_thresholds`.
        always_share: share of normal tokens on which an always-active neuron must be active.

    Returns:
        The :class:`RepairPlan`.
    """
    if set(normal) != set(glitch):
        raise InterpError("normal and glitch activations must cover the same hooks")
    thr = activation_thresholds(normal, threshold)
    neurons = key_neuron_sets(normal, thr, always_share)
    alpha, beta, gaps = repair_strengths(normal, glitch, neurons)
    return RepairPlan(neurons, thr, alpha, beta, gaps)


def _repair_fn(k: KeyNeurons, threshold: float, alpha: float, beta: float) -> Callable:
    always = torch.as_tensor(k.always, dtype=torch.long)
    never = torch.as_tensor(k.never, dtype=torch.long)

    def repair(x: torch.Tensor, hook) -> torch.Tensor:
        info = current_batch()
        if info is not None and info.phase == "prefix":
            return x  # the shared template prefix: its last token is not the prompt's
        rows = torch.arange(x.shape[0], device=x.device)
        last = info.last.to(x.device) if info is not None else torch.full_like(rows, x.shape[1] - 1)
        v = x[rows, last]
        if len(never):
            n = v[:, never.to(x.device)]
            v[:, never.to(x.device)] = torch.where(n > threshold, n / alpha, n)
        if len(always):
            v[:, always.to(x.device)] = v[:, always.to(x.device)].abs() + beta
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
        ``[(hook_name, fn), ...]``, one per (kind, key layer).
    """
    hooks = []
    for k in plan.neurons:
        name = model.hook(k.kind, k.layer)
        if name is None:
            raise InterpError(f"{model.spec} has no {k.kind} hook")
        hooks.append((name, _repair_fn(k, plan.thresholds[k.kind], plan.alpha[k.kind], plan.beta[k.kind])))
    return hooks
