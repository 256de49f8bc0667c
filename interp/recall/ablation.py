"""Head ablation as a context manager: zero, mean or rescale chosen heads' ``hook_z``.

Usable around :func:`interp.capture`, :func:`interp.greedy_generate` and ``model.bridge.generate``::

    with interp.recall.ablate_heads(model, ["29.3", "29.7"]):
        interp.greedy_generate(model, ["The capital of France is"])

Which heads to ablate is the mitigation's choice (:mod:`interp.recall.mitigation`); this module only
applies it, so it imports nothing above the capture engine.

Modes: ``"zero"`` sets the heads' outputs to zero, ``"scale"`` multiplies them by ``scale``,
``"mean"`` replaces them by given mean values (one ``[head, d_head]`` per layer, or one per prompt,
``[n_prompts, head, d_head]``, indexed by :func:`interp.current_batch` rows inside a capture).
``positions="last"`` acts on each row's last token only (inside a capture the true last token of
the right-padded row; outside, e.g. in generation, the hook tensor's final position), ``"all"`` on
every position.
"""

from __future__ import annotations

import re
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence, Union

import torch

from interp.capture import current_batch
from interp.errors import InterpError
from interp.model import Model

Head = tuple[int, int]
MODES = ("zero", "mean", "scale")
_HEAD_RE = re.compile(r"^\s*(-?\d+)\s*\.\s*(\d+)\s*$")


def parse_heads(model: Model, heads: Union[str, Sequence[Union[str, Head]]]) -> list[Head]:
    """Heads from ``"L.H,L.H"`` text or a list of ``"L.H"`` strings / ``(L, H)`` pairs.

    Negative layers count from the end (``-1.3`` is head 3 of the last layer).

    Raises:
        InterpError: one line naming the bad entry.
    """
    items = _items(heads, f"{model.n_layers - 1}.0")
    out: list[Head] = []
    for it in items:
        if isinstance(it, str):
            m = _HEAD_RE.match(it)
            assert m is not None  # _items checked every string
            L, H = int(m.group(1)), int(m.group(2))
        else:
            try:
                L, H = (int(v) for v in it)
            except (TypeError, ValueError):
                raise InterpError(f"bad head {it!r}: give (layer, head) pairs or 'L.H' strings") from None
        if not -model.n_layers <= L < model.n_layers:
            raise InterpError(f"head {L}.{H}: layer out of range 0..{model.n_layers - 1}")
        if not 0 <= H < model.n_heads:
            raise InterpError(f"head {L}.{H}: head out of range 0..{model.n_heads - 1}")
        h = (L % model.n_layers, H)
        if h not in out:
            out.append(h)
    return out


def _items(heads: Union[str, Sequence[Union[str, Head]]], example: str) -> list[Union[str, Head]]:
    items = [s for s in heads.split(",") if s.strip()] if isinstance(heads, str) else list(heads)
    if not items:
        raise InterpError(f"no heads given; write them as L.H,L.H (e.g. {example})")
    for it in items:
        if isinstance(it, str) and not _HEAD_RE.match(it):
            raise InterpError(f"bad head {it.strip()!r}: write heads as LAYER.HEAD, e.g. {example}")
    return items


def check_head_syntax(heads: str) -> None:
    """Check ``"L.H,L.H"`` text before a model is loaded (:func:`parse_heads` checks the ranges).

    Raises:
        InterpError: one line naming the bad entry.
    """
    _items(heads, "-1.0 for head 0 of the last layer")


def head_name(head: Head) -> str:
    """``"L.H"``."""
    return f"{head[0]}.{head[1]}"


def ablation_hooks(
    model: Model,
    heads: Union[str, Sequence[Union[str, Head]]],
    mode: str = "zero",
    means: Optional[dict[int, torch.Tensor]] = None,
    scale: float = 0.0,
    positions: str = "all",
) -> list[tuple[str, object]]:
    """The forward hooks that ablate ``heads`` (see the module docstring for the arguments)."""
    if mode not in MODES:
        raise InterpError(f"ablation mode must be one of {MODES}, not {mode!r}")
    if isinstance(heads, str) and heads.strip().lower() == "auto":
        raise InterpError("heads are chosen by the mitigation: use `with interp.recall.mitigate(model, method=\"heads\")` "
                          "(or method=\"auto\" for the best method), or name the heads as L.H,L.H")
    if positions not in ("all", "last"):
        raise InterpError(f"positions must be 'all' or 'last', not {positions!r}")
    hs = parse_heads(model, heads)
    by_layer: dict[int, list[int]] = defaultdict(list)
    for L, H in hs:
        by_layer[L].append(H)
    if mode == "mean":
        missing = [L for L in by_layer if means is None or L not in means]
        if missing:
            raise InterpError(f"mean ablation needs means for layer(s) {missing}")
    hooks = []
    for L, Hs in by_layer.items():
        idx = torch.tensor(Hs, dtype=torch.long)
        mean_L = means[L] if mode == "mean" and means is not None else None

        def fn(z, hook, idx=idx, mean_L=mean_L):
            if positions != "all":
                info = current_batch()
                if info is not None and info.phase == "prefix":
                    return z  # a shared prefix's last token is not the prompt's last position
            z = z.clone()
            ix = idx.to(z.device)
            if positions == "all":
                sel = (slice(None), slice(None))
            else:
                info = current_batch()
                last = info.last.to(z.device) if info is not None else torch.full((z.shape[0],), z.shape[1] - 1, device=z.device)
                sel = (torch.arange(z.shape[0], device=z.device), last)
            cur = z[sel][..., ix, :]
            if mode == "zero":
                new = torch.zeros_like(cur)
            elif mode == "scale":
                new = cur * scale
            else:
                m = mean_L.to(z.device, z.dtype)
                if m.ndim == 3:
                    info = current_batch()
                    if info is None or m.shape[0] <= int(info.rows.max()):
                        raise InterpError("per-prompt means need interp.capture and one mean per prompt")
                    m = m[info.rows.to(m.device)]
                    m = m[:, None] if positions == "all" else m
                new = m[..., ix, :].expand_as(cur)
            if positions == "all":
                z[:, :, ix, :] = new
            else:
                z[sel[0][:, None], sel[1][:, None], ix[None, :], :] = new
            return z

        hooks.append((model.hook("z", L), fn))
    return hooks


@contextmanager
def ablate_heads(
    model: Model,
    heads: Union[str, Sequence[Union[str, Head]]],
    mode: str = "zero",
    means: Optional[dict[int, torch.Tensor]] = None,
    scale: float = 0.0,
    positions: str = "all",
) -> Iterator[Model]:
    """Ablate attention heads for everything run on ``model`` inside the block.

    Args:
        model: the model.
        heads: ``"L.H,L.H"`` or a list of ``"L.H"`` / ``(L, H)``. Heads chosen on the train facts
            come from the mitigation: :func:`interp.recall.mitigate` (``method="heads"``).
        mode: ``"zero"``, ``"mean"`` or ``"scale"``.
        means: for ``"mean"``: layer -> ``[head, d_head]`` (or ``[n_prompts, head, d_head]``).
        scale: for ``"scale"``: the factor on the heads' outputs.
        positions: ``"all"`` or ``"last"``.

    Yields:
        The model, with the ablation active.
    """
    with model.hooks(ablation_hooks(model, heads, mode, means, scale, positions)):
        yield model
