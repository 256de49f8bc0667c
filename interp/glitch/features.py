"""GlitchProber's activation features: attention pattern, MLP gate and MLP data, per layer.

Every probed token sits in the same prompt (the repeat oracle's template), so the template's part
before the token is run once and shared through :func:`interp.capture`'s ``prefix``. The features
are read at one position of the first forward pass: ``"token"`` (the probed token itself: each row
is then one token long, and the suffix is never run) or ``"last"`` (the prompt's last token, where
the reply starts). Only the requested layers' hooks are kept, and the forward pass stops after the
last of them.

Per layer the feature vector is ``[pattern (head x key_pos) | gate (d_mlp) | data (d_mlp)]``; the
data part is absent for non-gated MLPs, whose ``mlp.hook_pre`` is the pre-activation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from jaxtyping import Float

from interp.capture import capture
from interp.errors import InterpError
from interp.glitch.oracle import RepeatTemplate, repeat_template
from interp.model import Model

FEATURE_KINDS = ("pattern", "mlp_gate", "mlp_data")
FEATURE_POSITIONS = ("token", "last")


@dataclass
class GlitchFeatures:
    """Activation features of a set of tokens, one block per (layer, kind).

    Attributes:
        token_ids: the tokens, in row order.
        blocks: ``(layer, kind) -> [n, width]`` float32 arrays.
        position: ``"token"`` or ``"last"``.
        seconds: wall time of the capture.
    """

    token_ids: list[int]
    blocks: dict[tuple[int, str], np.ndarray]
    position: str
    seconds: float = 0.0

    @property
    def layers(self) -> list[int]:
        return sorted({L for L, _ in self.blocks})

    @property
    def kinds(self) -> list[str]:
        return [k for k in FEATURE_KINDS if any(kk == k for _, kk in self.blocks)]

    def matrix(self, layers: Optional[Sequence[int]] = None, kinds: Optional[Sequence[str]] = None) -> Float[np.ndarray, "n feature"]:
        """The feature blocks of ``layers`` and ``kinds`` side by side (all by default)."""
        layers = self.layers if layers is None else list(layers)
        kinds = self.kinds if kinds is None else list(kinds)
        parts = [self.blocks[(L, k)] for L in layers for k in kinds if (L, k) in self.blocks]
        if not parts:
            raise InterpError(f"no features for layers {layers} and kinds {kinds}")
        return np.concatenate(parts, axis=1)

    def rows(self, idx: Sequence[int]) -> "GlitchFeatures":
        """The features of a subset of rows."""
        idx = np.asarray(idx, dtype=int)
        return GlitchFeatures([self.token_ids[i] for i in idx], {k: v[idx] for k, v in self.blocks.items()}, self.position, self.seconds)


def feature_hooks(model: Model, layer: int, kinds: Sequence[str] = FEATURE_KINDS) -> dict[str, str]:
    """Hook name of each feature kind at one layer (``mlp_data`` is skipped for non-gated MLPs)."""
    out = {}
    for kind in kinds:
        if kind not in FEATURE_KINDS:
            raise InterpError(f"unknown feature kind {kind!r}; one of {FEATURE_KINDS}")
        name = model.hook(kind, layer)
        if name is not None:
            out[kind] = name
    return out


def glitch_features(
    model: Model,
    token_ids: Sequence[int],
    layers: Optional[Sequence[int]] = None,
    *,
    kinds: Sequence[str] = FEATURE_KINDS,
    position: str = "token",
    template: Optional[RepeatTemplate] = None,
    batch_size: int = 256,
    progress: Optional[bool] = None,
) -> GlitchFeatures:
    """Capture the activation features of each token placed in the oracle's prompt.

    Args:
        model: the model handle.
        token_ids: vocabulary ids.
        layers: layers to read (default: all).
        kinds: feature kinds, a subset of :data:`FEATURE_KINDS`.
        position: ``"token"`` (the probed token's position) or ``"last"`` (the prompt's end).
        template: the oracle prompt (default: :func:`repeat_template`).
        batch_size: rows per forward pass.
        progress: show a progress bar.

    Returns:
        The :class:`GlitchFeatures`.
    """
    import time

    if position not in FEATURE_POSITIONS:
        raise InterpError(f"position must be one of {FEATURE_POSITIONS}, not {position!r}")
    layers = list(range(model.n_layers)) if layers is None else sorted({int(L) for L in layers})
    if not layers or any(not 0 <= L < model.n_layers for L in layers):
        raise InterpError(f"layers must be in 0..{model.n_layers - 1}, got {layers}")
    tpl = template or repeat_template(model)
    ids = [int(t) for t in token_ids]
    if not ids:
        raise InterpError("no tokens to extract features for")
    names = {L: feature_hooks(model, L, kinds) for L in layers}
    hooks = [h for per in names.values() for h in per.values()]
    rows = [[t] for t in ids] if position == "token" else [tpl.row(t) for t in ids]
    P = len(tpl.prefix_ids)
    t0 = time.perf_counter()
    cap = capture(model, rows, hooks=hooks, positions="last", prefix=list(tpl.prefix_ids), batch_size=batch_size,
                  progress=progress, desc="glitch features", stop_at_layer=max(layers) + 1, dtype=torch.float32)
    seconds = time.perf_counter() - t0
    blocks: dict[tuple[int, str], np.ndarray] = {}
    for L, per in names.items():
        for kind, hook in per.items():
            x = cap.acts[hook]
            if kind == "pattern":
                x = x[..., : P + len(rows[0])].reshape(len(ids), -1)
            blocks[(L, kind)] = x.numpy().astype(np.float32, copy=False)
    return GlitchFeatures(ids, blocks, position, seconds)
