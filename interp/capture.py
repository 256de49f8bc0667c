"""One activation-capture engine for every analysis.

:func:`capture` runs prompts through the model in length-sorted, right-padded batches and keeps
only the requested hooks at only the requested positions, moved to CPU as each batch finishes, so
memory stays bounded whatever the dataset size. When many prompts share a prefix (a vocabulary scan
puts every token behind the same template), the prefix's key/value cache is computed once and
reused for every batch.

Positions are indices into the full token sequence (prefix + prompt): ``"last"``, an int (negative
counts from each prompt's end), a list of ints (the same for every prompt), a list of per-prompt
lists of equal length, or ``"all"`` (ragged: a list of per-prompt tensors).

Shapes of what comes back, for ``n`` prompts and ``k`` positions (``k`` is squeezed for ``"last"``
and single ints):

* residual / MLP hooks: ``[n, k, d]``
* ``hook_z`` / ``hook_q`` / ``hook_k`` / ``hook_v``: ``[n, k, head, d_head]``
* ``hook_pattern`` / ``hook_attn_scores``: ``[n, k, head, key_pos]``; the key axis runs over the
  whole sequence (prefix included) and is zero-padded to the longest sequence.
* derived ``blocks.L.attn.hook_result``: ``[n, k, head, d_model]``, each head's write into the
  residual stream, computed from ``hook_z`` at the captured positions only.

Families whose bridge has no ``hook_pattern`` (OPT) get it derived from ``hook_q`` and ``hook_k``
(softmax of scaled scores under the causal and padding masks).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
from interp.progress import track

from interp.errors import InterpError
from interp.model import Model

Positions = Union[str, int, Sequence[int], Sequence[Sequence[int]]]

_QUERY_AXIS_HOOKS = ("hook_pattern", "hook_attn_scores")
_BATCH: contextvars.ContextVar[Optional["BatchInfo"]] = contextvars.ContextVar("interp_batch", default=None)


@dataclass
class BatchInfo:
    """What the batch now running looks like, for intervention hooks that need positions.

    Hook tensors cover only the non-prefix tokens; ``offset`` is the prefix length. The shared
    prefix itself runs once, before any batch, with ``phase == "prefix"``: hooks that edit "the
    prompt's last position" should leave that pass alone.

    Attributes:
        lengths: full length (prefix + prompt) of each row.
        offset: number of prefix tokens held in the key/value cache (0 without a prefix).
        last: index, in the hook tensor's position axis, of each row's last real token.
        rows: indices of the rows in the caller's input order.
        phase: ``"prefix"`` (the shared prefix), ``"prompt"`` (the prompts) or ``"decode"`` (one
            token per row after a key/value cache of the earlier ones: a new token during
            :func:`interp.greedy_generate`, or the last token re-run alone by
            :class:`interp.tail.TailCache`).
    """

    lengths: torch.Tensor
    offset: int
    last: torch.Tensor
    rows: torch.Tensor
    phase: str = "prompt"


def current_batch() -> Optional[BatchInfo]:
    """The :class:`BatchInfo` of the forward pass being run by :func:`capture` or
    :func:`interp.greedy_generate` (None outside them)."""
    return _BATCH.get()


@contextlib.contextmanager
def running(info: BatchInfo) -> Iterator[None]:
    """Make ``info`` what :func:`current_batch` returns for the forward pass run inside the block
    (:func:`capture`, :func:`interp.greedy_generate` and :class:`interp.tail.TailCache` use it)."""
    token = _BATCH.set(info)
    try:
        yield
    finally:
        _BATCH.reset(token)


@dataclass
class Captured:
    """Activations from :func:`capture`, in the caller's prompt order.

    Attributes:
        acts: hook name -> tensor (or list of tensors for ``positions="all"``).
        logits: logits at the captured positions, if asked for.
        positions: ``[n, k]`` absolute positions captured (None for ``"all"``).
        lengths: ``[n]`` full sequence lengths (prefix included).
        tokens: the full token ids of each prompt (prefix included).
        meta: how the prompts were run (prefix length, batch size, number of batches).
        every: the ``every_position`` hooks: hook name -> per-prompt ``[len, ...]`` tensors over the
            positions after the prefix.
    """

    acts: dict[str, Any]
    logits: Optional[Any]
    positions: Optional[torch.Tensor]
    lengths: torch.Tensor
    tokens: list[list[int]]
    meta: dict[str, Any] = field(default_factory=dict)
    every: dict[str, list] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.acts[name]

    def __contains__(self, name: str) -> bool:
        return name in self.acts


def _as_token_lists(model: Model, inputs: Any, has_prefix: bool) -> list[list[int]]:
    if isinstance(inputs, str):
        raise InterpError("capture takes a list of prompts, not one string")
    if isinstance(inputs, torch.Tensor):
        if inputs.ndim != 2:
            raise InterpError(f"token tensor must be [batch, pos], got shape {tuple(inputs.shape)}")
        return [list(map(int, row)) for row in inputs]
    out = []
    for x in inputs:
        if isinstance(x, str):
            out.append(model.encode(x, prepend_bos=False if has_prefix else None))
        else:
            out.append([int(t) for t in (x.tolist() if isinstance(x, torch.Tensor) else x)])
    for i, t in enumerate(out):
        if not t and not has_prefix:
            raise InterpError(f"prompt {i} has no tokens")
    return out


def _resolve_positions(positions: Positions, lengths: list[int], offset: int) -> tuple[Optional[torch.Tensor], bool]:
    """Absolute positions ``[n, k]`` and whether to squeeze ``k``; None for "all"."""
    n = len(lengths)
    if isinstance(positions, str):
        if positions == "last":
            return torch.tensor([[L - 1] for L in lengths]), True
        if positions == "all":
            return None, False
        raise InterpError(f"positions must be 'last', 'all', an int or lists of ints, not {positions!r}")
    if isinstance(positions, int):
        rel, squeeze = [[positions]] * n, True
    elif len(positions) and all(isinstance(p, int) for p in positions):
        rel, squeeze = [list(positions)] * n, False
    else:
        rel, squeeze = [list(p) for p in positions], False
        if len(rel) != n:
            raise InterpError(f"got positions for {len(rel)} prompts but {n} prompts")
        if len({len(r) for r in rel}) > 1:
            raise InterpError("per-prompt position lists must all have the same length")
    out = []
    for L, r in zip(lengths, rel):
        row = [p + L if p < 0 else p for p in r]
        for p in row:
            if not (offset <= p < L):
                where = "inside the shared prefix" if 0 <= p < offset else "outside the sequence"
                raise InterpError(f"position {p} is {where} (sequence length {L}, prefix {offset})")
        out.append(row)
    return torch.tensor(out, dtype=torch.long), squeeze


def _prefix_cache(model: Model, prefix_ids: list[int], want_k_layers: list[int]):
    """Run the shared prefix once; return its HF cache and, if needed, its keys per layer."""
    keys: dict[int, torch.Tensor] = {}
    hooks = []
    for L in want_k_layers:

        def save_k(x, hook, L=L):
            keys[L] = x.detach()
            return x

        hooks.append((f"blocks.{L}.attn.hook_k", save_k))
    ids = torch.tensor([prefix_ids], device=model.device)
    P = len(prefix_ids)
    with running(BatchInfo(torch.tensor([P]), 0, torch.tensor([P - 1]), torch.zeros(0, dtype=torch.long), "prefix")), \
            torch.no_grad(), model.bridge.hooks(fwd_hooks=hooks):
        _, cache = model.bridge(ids, return_type="logits_and_cache", logits_to_keep=1)
    return cache, keys


def _expand_cache(cache: Any, batch: int) -> Any:
    c = copy.deepcopy(cache)
    if batch > 1:
        c.batch_repeat_interleave(batch)
    return c


_LAYER_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _derived_pattern(q: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor, q_abs: torch.Tensor) -> torch.Tensor:
    """Attention pattern from queries and keys (non-rotary families without ``hook_pattern``).

    Args:
        q: ``[b, kq, head, d_head]`` queries at the captured positions.
        k: ``[b, key_pos, head_kv, d_head]`` keys at every position (prefix included).
        key_mask: ``[b, key_pos]`` 1 for real tokens.
        q_abs: ``[b, kq]`` absolute positions of the queries.
    Returns:
        ``[b, kq, head, key_pos]``
    """
    h, hk = q.shape[2], k.shape[2]
    if hk != h:
        k = k.repeat_interleave(h // hk, dim=2)
    scores = torch.einsum("bqhd,bkhd->bqhk", q.float(), k.float()) / math.sqrt(q.shape[-1])
    kpos = torch.arange(k.shape[1], device=q.device)
    allowed = (kpos[None, None, :] <= q_abs[:, :, None]) & key_mask[:, None, :].bool()
    scores = scores.masked_fill(~allowed[:, :, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1).to(q.dtype)


def capture(
    model: Model,
    inputs: Union[Sequence[str], Sequence[Sequence[int]], torch.Tensor],
    hooks: Sequence[str] = (),
    positions: Positions = "last",
    *,
    prefix: Union[None, str, Sequence[int]] = None,
    logits: bool = False,
    batch_size: int = 32,
    progress: Optional[bool] = None,
    desc: str = "capture",
    dtype: Optional[torch.dtype] = None,
    stop_at_layer: Optional[int] = None,
    every_position: Sequence[str] = (),
) -> Captured:
    """Run prompts and return only the requested activations at only the requested positions.

    Interventions compose: run ``capture`` inside ``with model.hooks([...]):`` and the hooks act
    on every batch (and on the shared prefix). Hooks that must know where each row's last token
    is read :func:`current_batch`.

    Args:
        model: the model handle.
        inputs: prompts as strings (encoded with the model's BOS policy, or without BOS when a
            prefix is given) or token id lists, or a ``[batch, pos]`` tensor.
        hooks: bridge hook names to keep; ``blocks.L.attn.hook_result`` is derived from ``hook_z``.
        positions: which positions to keep (see module docstring).
        prefix: tokens or text shared by every prompt, run once and reused through the KV cache.
            Prompts are then the continuations after it.
        logits: also return logits at the captured positions.
        batch_size: prompts per forward pass.
        progress: show a progress bar (default: when there is more than one batch and
            ``INTERP_PROGRESS`` is not ``0``).
        desc: progress bar label.
        dtype: cast captured activations to this dtype (default: the model's).
        stop_at_layer: run only blocks ``0 .. stop_at_layer-1``; incompatible with ``logits``.
            Without logits this is set automatically to just after the last requested block.
        every_position: residual-stream or MLP hooks also kept at every position of each prompt
            after the prefix (in :attr:`Captured.every`, ragged as with ``positions="all"``), from
            the same forward passes, whatever ``positions`` says for ``hooks``.

    Returns:
        A :class:`Captured` in the order of ``inputs``.
    """
    if batch_size < 1:
        raise InterpError("batch_size must be at least 1")
    if stop_at_layer is not None:
        if logits:
            raise InterpError("logits are not available with stop_at_layer")
        if not 0 < stop_at_layer <= model.n_layers:
            raise InterpError(f"stop_at_layer must be in 1..{model.n_layers}, not {stop_at_layer}")
        late = [h for h in [*hooks, *every_position] if (mm := _LAYER_RE.match(h)) and int(mm.group(1)) >= stop_at_layer]
        if late:
            raise InterpError(f"hooks {late} are at or after stop_at_layer={stop_at_layer}")
    prefix_ids: list[int] = []
    if prefix is not None:
        prefix_ids = model.encode(prefix) if isinstance(prefix, str) else [int(t) for t in prefix]
        if not prefix_ids:
            raise InterpError("the shared prefix has no tokens")
    toks = _as_token_lists(model, inputs, has_prefix=bool(prefix_ids))
    n = len(toks)
    P = len(prefix_ids)
    lengths = [P + len(t) for t in toks]
    pos_abs, squeeze = _resolve_positions(positions, lengths, P)

    hook_set = set(hook_dict := model.bridge.hook_dict)
    requested = list(dict.fromkeys(hooks))
    every = list(dict.fromkeys(every_position))
    for name in every:
        if name not in hook_set or ".attn." in name:
            raise InterpError(f"every_position takes residual-stream or MLP hooks of {model.spec}, not {name!r}")
    raw_hooks: set[str] = set()
    derived_result: list[int] = []
    derived_pattern: list[int] = []
    for name in requested:
        m = _LAYER_RE.match(name)
        if name.endswith("attn.hook_result") and m:
            derived_result.append(int(m.group(1)))
            raw_hooks.add(f"blocks.{m.group(1)}.attn.hook_z")
        elif name.endswith("attn.hook_pattern") and not model.has_pattern_hook and m:
            if model.bridge.cfg.positional_embedding_type == "rotary":
                raise InterpError(f"{model.spec} has no {name} and is rotary, so it cannot be derived from q and k")
            derived_pattern.append(int(m.group(1)))
            raw_hooks.update({f"blocks.{m.group(1)}.attn.hook_q", f"blocks.{m.group(1)}.attn.hook_k"})
        elif name in hook_set:
            raw_hooks.add(name)
        else:
            raise InterpError(f"{model.spec} ({model.family}) has no hook named {name!r}")
    raw_hooks.update(every)
    del hook_dict

    if stop_at_layer is None and not logits and (requested or every):
        # nothing after the last requested block is read: skip those blocks and the unembedding
        layers = [_LAYER_RE.match(h) for h in requested + every]
        if all(layers):
            last_needed = max(int(mm.group(1)) for mm in layers) + 1
            if last_needed < model.n_layers:
                stop_at_layer = last_needed

    cache0, prefix_keys = (None, {})
    if P:
        cache0, prefix_keys = _prefix_cache(model, prefix_ids, derived_pattern)

    max_len = max(lengths) if lengths else 0
    order = sorted(range(n), key=lambda i: -lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    show = progress if progress is not None else len(batches) > 1
    out_acts: dict[str, list] = {name: [None] * n for name in requested}
    out_every: dict[str, list] = {name: [None] * n for name in every}
    out_logits: list = [None] * n if logits else []
    out_dtype = dtype or model.dtype

    for rows in track(batches, desc=desc, disable=not show, unit="batch"):
        B = len(rows)
        S = max(lengths[i] for i in rows) - P
        ids = torch.full((B, S), model.pad_token_id, dtype=torch.long)
        mask = torch.zeros((B, P + S), dtype=torch.long)
        mask[:, :P] = 1
        for j, i in enumerate(rows):
            ids[j, : len(toks[i])] = torch.tensor(toks[i], dtype=torch.long)
            mask[j, : lengths[i]] = 1
        last_rel = torch.tensor([lengths[i] - 1 - P for i in rows])
        if pos_abs is not None:
            sel_abs = pos_abs[rows]  # [B, k]
            sel_rel = sel_abs - P
        store: dict[str, torch.Tensor] = {}

        def keeper(name: str) -> Callable:
            def keep(x, hook):
                store[name] = x.detach()
                return x

            return keep

        fwd = [(name, keeper(name)) for name in raw_hooks]
        kwargs: dict[str, Any] = {"attention_mask": mask.to(model.device)}
        if pos_abs is not None and logits:
            keep_idx = torch.unique(sel_rel)
            kwargs["logits_to_keep"] = keep_idx.to(model.device)
        elif stop_at_layer is not None:
            kwargs["stop_at_layer"] = stop_at_layer
        elif not logits:
            kwargs["logits_to_keep"] = 1
        if P:
            kwargs["past_key_values"] = _expand_cache(cache0, B)
        with running(BatchInfo(torch.tensor([lengths[i] for i in rows]), P, last_rel, torch.tensor(rows))), \
                torch.no_grad(), model.bridge.hooks(fwd_hooks=fwd):
            lg = model.bridge(ids.to(model.device), **kwargs)

        def take(x: torch.Tensor, name: str) -> Any:
            qaxis = 2 if name.endswith(_QUERY_AXIS_HOOKS) else 1
            if qaxis == 2 and x.shape[-1] < P + S:
                # sliding-window layers see only the cache's last keys: right-align them
                x = torch.nn.functional.pad(x, (P + S - x.shape[-1], 0))
            if pos_abs is None:
                outs = []
                for j, i in enumerate(rows):
                    Lr = lengths[i] - P
                    t = x[j].narrow(qaxis - 1, 0, Lr)
                    if qaxis == 2:
                        t = t.narrow(-1, 0, lengths[i]).movedim(1, 0)
                    outs.append(t)
                return outs
            idx = sel_rel.to(x.device)
            if qaxis == 1:
                g = x[torch.arange(B, device=x.device)[:, None], idx]  # [B, k, ...]
            else:
                g = x.movedim(2, 1)[torch.arange(B, device=x.device)[:, None], idx]  # [B, k, head, key]
                if g.shape[-1] < max_len:
                    g = torch.nn.functional.pad(g, (0, max_len - g.shape[-1]))
            return g

        for name in requested:
            m = _LAYER_RE.match(name)
            if name in raw_hooks and name in store:
                val = take(store[name], name)
            elif m and int(m.group(1)) in derived_result and name.endswith("hook_result"):
                L = int(m.group(1))
                z = take(store[f"blocks.{L}.attn.hook_z"], f"blocks.{L}.attn.hook_z")
                with torch.no_grad():  # captured values carry no autograd graph
                    val = [model.head_outputs(t, L) for t in z] if isinstance(z, list) else model.head_outputs(z, L)
            elif m and int(m.group(1)) in derived_pattern:
                L = int(m.group(1))
                k_all = store[f"blocks.{L}.attn.hook_k"]
                if P:
                    k_all = torch.cat([prefix_keys[L].expand(B, *prefix_keys[L].shape[1:]), k_all], dim=1)
                q_all = store[f"blocks.{L}.attn.hook_q"]
                if pos_abs is None:
                    val = []
                    for j, i in enumerate(rows):
                        Lr = lengths[i] - P
                        qa = torch.arange(P, P + Lr)[None]
                        pat = _derived_pattern(q_all[j : j + 1, :Lr], k_all[j : j + 1, : lengths[i]], mask[j : j + 1, : lengths[i]].to(q_all.device), qa.to(q_all.device))
                        val.append(pat[0])
                else:
                    q = take(q_all, f"blocks.{L}.attn.hook_q")
                    pat = _derived_pattern(q, k_all, mask.to(q.device), sel_abs.to(q.device))
                    if pat.shape[-1] < max_len:
                        pat = torch.nn.functional.pad(pat, (0, max_len - pat.shape[-1]))
                    val = pat
            else:
                raise InterpError(f"hook {name!r} did not fire for {model.spec}")
            for j, i in enumerate(rows):
                v = val[j]
                out_acts[name][i] = v.to("cpu", out_dtype)
        for name in every:
            for j, i in enumerate(rows):
                out_every[name][i] = store[name][j, : lengths[i] - P].to("cpu", out_dtype)
        if logits:
            if pos_abs is None:
                for j, i in enumerate(rows):
                    out_logits[i] = lg[j, : lengths[i] - P].to("cpu", torch.float32)
            else:
                keep_idx = kwargs["logits_to_keep"].cpu()
                where = torch.searchsorted(keep_idx, sel_rel)
                g = lg.cpu()[torch.arange(B)[:, None], where]
                for j, i in enumerate(rows):
                    out_logits[i] = g[j].float()

    acts: dict[str, Any] = {}
    for name, vals in out_acts.items():
        if pos_abs is None:
            acts[name] = vals
        else:
            t = torch.stack(vals) if n else torch.empty(0)
            acts[name] = t[:, 0] if squeeze and n else t
    lg_out = None
    if logits:
        if pos_abs is None:
            lg_out = out_logits
        else:
            lg_out = torch.stack(out_logits) if n else torch.empty(0)
            if squeeze and n:
                lg_out = lg_out[:, 0]
    return Captured(
        acts=acts,
        logits=lg_out,
        positions=pos_abs,
        lengths=torch.tensor(lengths),
        tokens=[prefix_ids + t for t in toks],
        meta={"prefix_len": P, "batch_size": batch_size, "n_batches": len(batches)},
        every=out_every,
    )
