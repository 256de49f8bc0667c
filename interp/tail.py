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

Last position only: when the intervention changes nothing at earlier positions that the last
position reads (it acts at the last position only; or the tail is the final block alone and it acts
after that block's keys and values, on head outputs or the MLP), the last position's logits need only
the earlier positions' keys and values in blocks ``start ..`` as the unchanged model computes them.
``TailCache.logits("last", last_only=True)`` computes those once per cache (without hooks) and then
runs each intervention on one token per sequence: a final-layer intervention on 3-shot prompts runs
1 position instead of about 50.
"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from typing import Any, Callable, Iterator, Literal, Optional, Sequence

import torch
from interp.progress import track
from interp.scoring import target_logprobs

from interp.loading import decoder_layers
from interp.model import Model

Readout = Callable[[list[int], torch.Tensor], torch.Tensor]  # (sequence indices, last-position logits) -> logits

LAST_TOKEN_BATCH = 256  # rows per last-token re-run: one token a row, so each weight matrix (the unembedding above all) is read once for many rows
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
    pass over them leaves it, or at least sized to them: the masks are sized from the first layers'
    entries; blocks ``start ..`` read and extend their own entries), in which case ``mask`` covers
    the cached positions and ``x``'s; ``position_ids`` (``[batch, pos]``) default to the positions
    after the cache's. An empty cache is filled by blocks ``start ..`` only."""
    base, attr = decoder_layers(model.hf_model)
    assert base is not None
    with _layers_from(base, attr, start):
        out = base(inputs_embeds=x.to(model.device, model.dtype), attention_mask=mask.to(model.device),
                   past_key_values=past_key_values, use_cache=past_key_values is not None,
                   **({} if position_ids is None else {"position_ids": position_ids.to(model.device)}))
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


@contextlib.contextmanager
def hooks_suspended(model: Model) -> Iterator[None]:
    """Run the block with every forward hook on the bridge's hook points set aside (restored after)."""
    from transformer_lens.hook_points import HookPoint

    saved = []
    for m in model.bridge.modules():
        if isinstance(m, HookPoint) and m._forward_hooks:
            saved.append((m, m._forward_hooks))
            m._forward_hooks = OrderedDict()
    try:
        yield
    finally:
        for m, h in saved:
            m._forward_hooks = h


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

    def _padded(self, rows: list[int], n: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The streams of ``rows`` over their first ``n[j]`` positions (prefix included), right-padded
        to the longest, ``[batch, max n, d_model]``, and their mask."""
        P = 0 if self.head is None else len(self.head)
        x = torch.zeros(len(rows), max(n), self.resid[0].shape[-1])
        mask = torch.zeros(len(rows), max(n), dtype=torch.long)
        for j, (i, k) in enumerate(zip(rows, n)):
            if P:
                x[j, : min(P, k)] = self.head[:k]
            if k > P:
                x[j, P:k] = self.resid[i][: k - P]
            mask[j, :k] = 1
        return x, mask

    def logits(self, positions: Literal["last", "all"] = "last", rows: Optional[Sequence[int]] = None,
               desc: Optional[str] = None, last_only: bool = False) -> list[torch.Tensor]:
        """Logits under whatever hooks are active: ``[d_vocab]`` per sequence at its last position,
        or ``[len, d_vocab]`` per sequence at every position; of the sequences ``rows`` (default
        all) in that order (ask for a few at a time with ``"all"``: the logits of every position
        of many sequences are large). ``desc`` shows a progress bar with that label.

        Hooks see a :class:`interp.capture.BatchInfo` as under :func:`interp.capture.capture`
        (``rows`` index this cache's sequences, ``offset`` is 0: the prefix is part of each
        re-run sequence), so position- and row-aware interventions act as in a whole pass.

        ``last_only`` (with ``"last"``): re-run each sequence's last token alone on the keys and
        values of its earlier positions in blocks ``start ..``, computed once per batch of this
        cache without any hooks and kept (module docstring; hooks then see a ``"decode"`` batch of
        one position per row). Exact only when the active hooks change nothing there: hooks acting
        at the last position alone, or, when ``start`` is the final block, hooks after its keys and
        values (head outputs, the MLP). Where the model cannot be run this way
        (:func:`last_only_supported`) whole tails are run."""
        want = list(range(len(self.seqs))) if rows is None else [int(r) for r in rows]
        if positions == "last":
            got = {}
            for rows_, lg in self._last_batches(want, desc, last_only):
                lg = lg.float().cpu()
                got.update({i: lg[j] for j, i in enumerate(rows_)})
        else:
            got = self._logits(positions, want, desc)
        return [got[i] for i in want]

    def answer_scores(self, targets: Sequence[int], rows: Optional[Sequence[int]] = None, desc: Optional[str] = None,
                      last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(target), target is the argmax)`` at each sequence's last position, read batch by
        batch (no sequence's logits are kept): ``targets[k]`` is the token scored for ``rows[k]``
        (default all sequences, in order). Hooks and ``last_only`` as in :meth:`logits`."""
        return self.answer_scores_many(targets, [None], rows, desc, last_only)[0]

    def answer_scores_many(self, targets: Sequence[int], readouts: Sequence[Optional[Readout]],
                           rows: Optional[Sequence[int]] = None, desc: Optional[str] = None,
                           last_only: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`answer_scores` for each of ``readouts`` from one pass: a readout maps a batch's
        sequence indices and last-position logits to new logits (None: the logits as they are), e.g.
        logits derived from what hooks recorded during the batch's pass, which ran just before."""
        want = list(range(len(self.seqs))) if rows is None else [int(r) for r in rows]
        if len(targets) != len(want):
            raise ValueError("one target per scored sequence")
        where = {i: k for k, i in enumerate(want)}
        t = torch.as_tensor(list(targets), dtype=torch.long)
        out = [(torch.zeros(len(want)), torch.zeros(len(want), dtype=torch.bool)) for _ in readouts]
        for rows_, lg in self._last_batches(want, desc, last_only):
            k = torch.tensor([where[i] for i in rows_])
            for (logp, top), f in zip(out, readouts):
                got = lg if f is None else f(rows_, lg)
                top[k] = got.argmax(-1).cpu() == t[k]  # on the logits as computed: a float copy has the same argmax
                logp[k] = target_logprobs(got, t[k]).cpu()
                del got
        return out

    def hidden(self, rows: Optional[Sequence[int]] = None) -> list[torch.Tensor]:
        """Final hidden states (after the final norm, before the unembedding) under whatever hooks
        and weights are active, ``[len, d_model]`` per sequence of ``rows`` (default all); for
        callers that unembed only some positions (:func:`lm_head`)."""
        want = list(range(len(self.seqs))) if rows is None else [int(r) for r in rows]
        got = self._logits("hidden", want)
        return [got[i] for i in want]

    def _last_only_ok(self) -> bool:
        window = getattr(decoder_layers(self.model.hf_model)[0].config, "sliding_window", None)
        # sliding-window masks count a row's distance from the padded batch length: exact below the window
        short = not window or max(map(len, self.seqs), default=0) < int(window)
        return short and last_only_supported(self.model)

    def _contexts(self, rows: list[int]) -> tuple[Any, torch.Tensor]:
        """The keys and values of ``rows``' earlier positions in blocks ``start ..`` (an HF cache; the
        layers before ``start`` hold placeholders of the same length, which only size the masks) and
        their mask; computed without hooks once per batch and kept."""
        from transformers import DynamicCache

        kept = self.__dict__.setdefault("_ctx", {})
        key = tuple(rows)
        if key not in kept:
            base, _ = decoder_layers(self.model.hf_model)
            x, mask = self._padded(rows, [len(self.seqs[i]) - 1 for i in rows])
            T = x.shape[1]
            cache = DynamicCache(config=base.config)
            with torch.no_grad(), hooks_suspended(self.model):
                blocks_from(self.model, x, mask, self.start, past_key_values=cache)
            for L in range(self.start):
                ph = torch.zeros(len(rows), 1, T, 1, dtype=x.dtype, device=self.model.device)
                cache.layers[L].update(ph, ph)
            kept[key] = (cache, mask)
        return kept[key]

    def _last_token_hidden(self, rows: list[int]) -> torch.Tensor:
        """Final hidden states ``[batch, d_model]`` of ``rows``' last tokens run alone on their kept contexts."""
        from interp.capture import BatchInfo, running

        lengths = torch.tensor([len(self.seqs[i]) for i in rows])
        x = torch.stack([self.resid[i][-1:] if len(self.resid[i]) else self.head[-1:] for i in rows])  # each last position
        cache, mask = self._contexts(rows)
        info = BatchInfo(lengths, 0, torch.zeros(len(rows), dtype=torch.long), torch.tensor(rows), "decode")
        with torch.no_grad(), running(info):
            h = blocks_from(self.model, x, torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype)], 1), self.start,
                            past_key_values=copy.deepcopy(cache), position_ids=(lengths - 1)[:, None])
        return h[:, -1]

    def _whole_tails(self, rows: list[int]) -> torch.Tensor:
        """Final hidden states ``[batch, max len, d_model]`` of blocks ``start ..`` re-run on ``rows`` whole."""
        from interp.capture import BatchInfo, running

        lengths = torch.tensor([len(self.seqs[i]) for i in rows])
        x, mask = self._padded(rows, lengths.tolist())
        with running(BatchInfo(lengths, 0, lengths - 1, torch.tensor(rows))):
            return _tail_forward(self.model, x, mask, self.start)

    def _last_batches(self, want: list[int], desc: Optional[str], last_only: bool) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``(rows, logits at their last positions [batch, d_vocab], in the unembedding's dtype)`` per
        batch of ``want`` (longest first)."""
        fast = last_only and self._last_only_ok()
        order = sorted(want, key=lambda i: -len(self.seqs[i]))
        size = max(self.batch_size, LAST_TOKEN_BATCH) if fast else self.batch_size
        for a in track(range(0, len(order), size), desc=desc or "", disable=desc is None, unit="batch"):
            rows = order[a : a + size]
            with torch.no_grad():
                if not fast:
                    h = self._whole_tails(rows)
                    last = torch.tensor([len(self.seqs[i]) - 1 for i in rows], device=h.device)
                    parts = [(rows, lm_head(self.model, h[torch.arange(len(rows), device=h.device), last]))]
                else:  # a one-token sequence has no earlier positions: its whole tail is its last token
                    ctx = [i for i in rows if len(self.seqs[i]) >= 2]
                    one = [i for i in rows if len(self.seqs[i]) < 2]
                    parts = []
                    if ctx:
                        parts.append((ctx, lm_head(self.model, self._last_token_hidden(ctx))))
                    if one:
                        parts.append((one, lm_head(self.model, self._whole_tails(one)[:, 0])))
            yield from parts

    def _logits(self, positions: str, want: list[int], desc: Optional[str] = None) -> dict[int, torch.Tensor]:
        """Per sequence, every position's logits (``"all"``) or final hidden states (``"hidden"``)."""
        out: dict[int, torch.Tensor] = {}
        order = sorted(want, key=lambda i: -len(self.seqs[i]))
        for a in track(range(0, len(order), self.batch_size), desc=desc or "", disable=desc is None, unit="batch"):
            rows = order[a : a + self.batch_size]
            h = self._whole_tails(rows)
            with torch.no_grad():
                if positions == "hidden":
                    for j, i in enumerate(rows):
                        out[i] = h[j, : len(self.seqs[i])].float().cpu()
                else:
                    lg = lm_head(self.model, h).float().cpu()
                    for j, i in enumerate(rows):
                        out[i] = lg[j, : len(self.seqs[i])]
        return out


def last_only_supported(model: Model) -> bool:
    """Whether ``TailCache.logits("last", last_only=True)`` reproduces whole tails on ``model``
    (checked once per model as :func:`tail_supported` is, from the final block and from a middle one,
    on sequences of different lengths, one at a time and batched: largest logit difference at most
    1e-3 of the logits' scale in float32, 5% below it; the verdict is kept on the model)."""
    if "_last_only_ok" in model.__dict__:
        return model.__dict__["_last_only_ok"]
    ok = False
    if tail_supported(model):
        g = torch.Generator().manual_seed(1)
        hi = min(model.d_vocab, len(model.tokenizer))
        seqs = [torch.randint(3, hi, (n,), generator=g).tolist() for n in (6, 9, 3)]
        # in bf16, a multi-block tail on one token rounds differently from one on every position
        # (2% of the logits' scale on Gemma 3 over 9 blocks); a wrong position or mask moves them far more
        m_fp32 = model.weights_dtype in ("float32", "float64")
        try:
            ok = True
            with hooks_suspended(model):
                for start in sorted({max(1, model.n_layers // 2), model.n_layers - 1}):
                    tc = TailCache(model, seqs, start, batch_size=4)
                    ref = tc.logits("last")
                    got = torch.stack([lm_head(model, tc._last_token_hidden([i])).float().cpu()[0] for i in range(len(seqs))])
                    batched = lm_head(model, tc._last_token_hidden([0, 1, 2])).float().cpu()
                    atol = max(float(r.abs().max()) for r in ref) * (1e-3 if m_fp32 else 0.05)
                    ok = ok and all(torch.allclose(r, got[i], atol=atol, rtol=0)
                                    and torch.allclose(r, batched[i], atol=atol, rtol=0) for i, r in enumerate(ref))
        except Exception:  # noqa: BLE001 - a decoder whose cache cannot be resumed this way runs whole tails
            ok = False
    model.__dict__["_last_only_ok"] = ok
    return ok


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
