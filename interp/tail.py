"""Re-run only the last blocks: exact logits under an intervention that starts late in the model.

An intervention that acts only from block ``start`` on (removing final-layer heads, projecting a
direction out of the final MLP's output) leaves the residual stream entering block ``start``
unchanged at every position. :class:`TailCache` computes that stream once per token sequence and
then, for each intervention tried, runs blocks ``start ..`` and the unembedding on it: the logits
equal a whole forward pass under the same hooks (checked per model, see :func:`tail_supported`),
for a fraction of the cost (blocks ``0 .. start-1`` are skipped; on a 30-layer model a final-layer
intervention costs one block plus the unembedding).

How the blocks are run: the model's own HF decoder is called on ``inputs_embeds`` equal to the
cached stream with its layer list cut to ``layers[start:]``, so rotary positions, attention masks,
sliding windows, norms and the bridge's hooks are the model's own. Families that add learned
position embeddings to ``inputs_embeds`` inside the decoder (GPT-2, OPT) cannot be resumed this way
and fall back to whole forward passes, as does any model whose check fails.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Literal, Optional, Sequence

import torch
from interp.progress import track

from interp.loading import decoder_layers
from interp.model import Model

_NO_TAIL = {"gpt2", "opt"}  # learned positions are added to inputs_embeds inside the decoder


@contextlib.contextmanager
def _layers_from(base: torch.nn.Module, attr: str, start: int) -> Iterator[None]:
    """The decoder with its layer list (and the config's per-layer ``layer_types``, which decoders
    index by position in the list: sliding or full attention, local or global rotary) cut at ``start``."""
    full = getattr(base, attr)
    cfg = getattr(base, "config", None)
    types = getattr(cfg, "layer_types", None)
    setattr(base, attr, torch.nn.ModuleList(list(full)[start:]))
    if types is not None:
        cfg.layer_types = list(types)[start:]
    try:
        yield
    finally:
        setattr(base, attr, full)
        if types is not None:
            cfg.layer_types = types


def blocks_from(model: Model, x: torch.Tensor, mask: torch.Tensor, start: int, past_key_values: Any = None,
                position_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Final hidden states (after the final norm) of blocks ``start ..`` run on residual ``x``
    (``[batch, pos, d_model]``, the stream entering block ``start``), with gradients if enabled.

    ``past_key_values``: an HF cache of earlier positions (every layer's entry filled, as a whole
    pass over them leaves it; blocks ``start ..`` read and extend their own entries), in which case
    ``mask`` covers the cached positions and ``x``'s; ``position_ids`` (``[batch, pos]``) default to
    the positions after the cache's."""
    base, attr = decoder_layers(model.hf_model)
    assert base is not None
    with _layers_from(base, attr, start):
        out = base(inputs_embeds=x.to(model.device, model.dtype), attention_mask=mask.to(model.device),
                   past_key_values=past_key_values, use_cache=past_key_values is not None,
                   **({} if position_ids is None else {"position_ids": position_ids.to(model.device)}))
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _tail_forward(model: Model, x: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
    """Final hidden states (after the final norm) of blocks ``start ..`` run on residual ``x``."""
    with torch.no_grad():
        return blocks_from(model, x, mask, start)


def lm_head(model: Model, h: torch.Tensor) -> torch.Tensor:
    """The model's own LM head on final hidden states (with its logit soft-capping, if any)."""
    hf = model.hf_model
    logits = hf.get_output_embeddings()(h) if hf.get_output_embeddings() is not None else model.unembed(h, normalize=False)
    cap = getattr(hf.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


class TailCache:
    """Residual streams entering block ``start`` for fixed token sequences, and logits from them.

    Attributes:
        seqs: the whole sequences (a shared prefix included).
        head: the shared prefix's stream, kept once (None without a prefix).
        resid: each sequence's stream after the prefix.

    Args:
        model: the model.
        seqs: token id sequences (BOS already in place, as the model is run), or the continuations
            after ``prefix``.
        start: the first block that is re-run (an intervention must act only from here on).
        batch_size: sequences per forward pass.
        prefix: tokens shared by every sequence (run once; the KV cache serves the continuations).
    """

    def __init__(self, model: Model, seqs: Sequence[Sequence[int]], start: int, batch_size: int = 16,
                 prefix: Optional[Sequence[int]] = None):
        from interp.capture import capture

        if not 1 <= start < model.n_layers:
            raise ValueError(f"start must be in 1..{model.n_layers - 1}, not {start}")
        self.model, self.start, self.batch_size = model, start, batch_size
        pre = [int(t) for t in prefix or []]
        self.seqs = [pre + list(map(int, s)) for s in seqs]
        hook = model.hook("resid_post", start - 1)
        # with a shared prefix the continuations run on its KV cache and its own stream is captured once
        cap = capture(model, [list(map(int, s)) for s in seqs], hooks=[hook], positions="all", batch_size=batch_size,
                      progress=False, dtype=torch.float32, prefix=pre or None)
        self.head = capture(model, [pre], hooks=[hook], positions="all", progress=False,
                            dtype=torch.float32).acts[hook][0].float().cpu() if pre else None
        self.resid = [r.float().cpu() for r in cap.acts[hook]]

    @classmethod
    def from_streams(cls, model: Model, seqs: Sequence[Sequence[int]], start: int, streams: Sequence[torch.Tensor],
                     batch_size: int = 16, prefix: Optional[Sequence[int]] = None,
                     prefix_stream: Optional[torch.Tensor] = None) -> "TailCache":
        """A cache from residual streams already computed, so no forward pass is run: ``streams[i]``
        is ``[len(seqs[i]), d_model]``, the output of block ``start - 1`` at every position of
        ``seqs[i]`` (as a capture of ``blocks.{start-1}.hook_resid_post`` at every position gives it).
        With ``prefix``, ``seqs`` are the continuations after it and ``prefix_stream`` its own stream
        (``[len(prefix), d_model]``, kept once)."""
        if not 1 <= start < model.n_layers:
            raise ValueError(f"start must be in 1..{model.n_layers - 1}, not {start}")
        if len(streams) != len(seqs) or any(r.shape != (len(s), model.d_model) for r, s in zip(streams, seqs)):
            raise ValueError("streams must hold one [len(seq), d_model] tensor per sequence")
        pre = [int(t) for t in prefix or []]
        if (prefix_stream is None) != (not pre) or (pre and tuple(prefix_stream.shape) != (len(pre), model.d_model)):
            raise ValueError("a prefix needs its own [len(prefix), d_model] stream, and a stream its prefix")
        self = cls.__new__(cls)
        self.model, self.start, self.batch_size = model, start, batch_size
        self.seqs = [pre + list(map(int, s)) for s in seqs]
        self.head = prefix_stream.float().cpu() if pre else None
        self.resid = [r.float().cpu() for r in streams]
        return self

    def logits(self, positions: Literal["last", "all"] = "last", rows: Optional[Sequence[int]] = None,
               desc: Optional[str] = None) -> list[torch.Tensor]:
        """Logits under whatever hooks are active: ``[d_vocab]`` per sequence at its last position,
        or ``[len, d_vocab]`` per sequence at every position; of the sequences ``rows`` (default
        all) in that order (ask for a few at a time with ``"all"``: the logits of every position
        of many sequences are large). ``desc`` shows a progress bar with that label.

        Hooks see a :class:`interp.capture.BatchInfo` as under :func:`interp.capture.capture`
        (``rows`` index this cache's sequences, ``offset`` is 0: the prefix is part of each
        re-run sequence), so position- and row-aware interventions act as in a whole pass."""
        want = list(range(len(self.seqs))) if rows is None else [int(r) for r in rows]
        got = self._logits(positions, want, desc)
        return [got[i] for i in want]

    def hidden(self, rows: Optional[Sequence[int]] = None) -> list[torch.Tensor]:
        """Final hidden states (after the final norm, before the unembedding) under whatever hooks
        and weights are active, ``[len, d_model]`` per sequence of ``rows`` (default all); for
        callers that unembed only some positions (:func:`lm_head`)."""
        want = list(range(len(self.seqs))) if rows is None else [int(r) for r in rows]
        got = self._logits("hidden", want)
        return [got[i] for i in want]

    def _logits(self, positions: str, want: list[int], desc: Optional[str] = None) -> dict[int, torch.Tensor]:
        from interp.capture import BatchInfo, running

        out: dict[int, torch.Tensor] = {}
        order = sorted(want, key=lambda i: -len(self.seqs[i]))
        d = self.resid[0].shape[-1] if self.resid else 0
        P = 0 if self.head is None else len(self.head)
        starts = range(0, len(order), self.batch_size)
        for a in track(starts, desc=desc or "", disable=desc is None, unit="batch"):
            rows = order[a : a + self.batch_size]
            T = max(len(self.seqs[i]) for i in rows)
            x = torch.zeros(len(rows), T, d)
            mask = torch.zeros(len(rows), T, dtype=torch.long)
            for j, i in enumerate(rows):
                n = len(self.seqs[i])
                if P:
                    x[j, :P] = self.head
                x[j, P:n] = self.resid[i]
                mask[j, :n] = 1
            lengths = torch.tensor([len(self.seqs[i]) for i in rows])
            with running(BatchInfo(lengths, 0, lengths - 1, torch.tensor(rows))):
                h = _tail_forward(self.model, x, mask, self.start)
            with torch.no_grad():
                if positions == "last":
                    last = torch.tensor([len(self.seqs[i]) - 1 for i in rows], device=h.device)
                    lg = lm_head(self.model, h[torch.arange(len(rows), device=h.device), last]).float().cpu()
                    for j, i in enumerate(rows):
                        out[i] = lg[j]
                elif positions == "hidden":
                    for j, i in enumerate(rows):
                        out[i] = h[j, : len(self.seqs[i])].float().cpu()
                else:
                    lg = lm_head(self.model, h).float().cpu()
                    for j, i in enumerate(rows):
                        out[i] = lg[j, : len(self.seqs[i])]
        return out


def tail_supported(model: Model) -> bool:
    """Whether :class:`TailCache` reproduces whole forward passes on ``model`` (checked once per
    model on two short sequences of different lengths: largest logit difference at most 1e-3 of the
    logits' scale; the verdict is kept on the model)."""
    if "_tail_ok" in model.__dict__:
        return model.__dict__["_tail_ok"]
    ok = False
    if model.family not in _NO_TAIL and model.n_layers >= 2 and decoder_layers(model.hf_model)[0] is not None:
        from interp.capture import capture

        g = torch.Generator().manual_seed(0)
        hi = min(model.d_vocab, len(model.tokenizer))
        seqs = [torch.randint(3, hi, (n,), generator=g).tolist() for n in (7, 4)]
        try:
            ref = capture(model, seqs, positions="all", logits=True, progress=False).logits
            got = TailCache(model, seqs, model.n_layers - 1).logits("all")
            scale = max(float(r.abs().max()) for r in ref)
            ok = all(torch.allclose(a.float(), b.float(), atol=1e-3 * scale, rtol=0) for a, b in zip(ref, got))
        except Exception:  # noqa: BLE001 - a decoder that cannot be resumed falls back to whole passes
            ok = False
    model.__dict__["_tail_ok"] = ok
    return ok
