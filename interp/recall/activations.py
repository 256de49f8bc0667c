"""The one capture pass every recall analysis reads: last-position activations of each prompt.

For each relation (its k-shot demonstrations are a shared prefix, run once through the KV cache)
one :func:`interp.capture` call keeps, at the last position only: the residual stream after each
layer, each MLP's output, each head's ``hook_z`` and each head's attention pattern, which is at
once reduced to the attention paid to the argument's tokens and to the first position. The answer's
probability and rank come from the logits of the same pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from jaxtyping import Float, Int

from interp import distributed
from interp.capture import capture
from interp.errors import InterpError
from interp.model import Model
from interp.recall.facts import PromptSet
from interp.scoring import target_logprobs, target_logprobs_ranks
from interp.tail import TailCache, tail_supported


@dataclass
class RecallActivations:
    """Last-position activations of a :class:`PromptSet` (rows in prompt order).

    Attributes:
        prompts: the prompts.
        layers: the layers captured (axis 1 of the per-layer tensors indexes this list).
        resid_post: residual stream after each captured layer.
        mlp_out: each captured layer's MLP output.
        z: each head's ``hook_z`` value.
        attn_arg: attention from the last position to the argument's tokens (summed over them).
        attn_first: attention from the last position to position 0 (the first token: BOS where the
            model prepends one; for SmolLM2, which adds none, the prompt's first word, the sink).
        final_resid: the residual stream entering the final norm.
        final_mlp_out: the final layer's MLP output (``final_resid - final_mlp_out`` is the stream
            after the final attention and before the final MLP, ``blocks.{L-1}.hook_resid_mid``
            where the family has it; parallel-attention blocks have no such hook, the difference
            is still "everything but the final MLP").
        answer_prob: probability of the answer's first token.
        answer_rank: its rank among all tokens (0 = argmax).
        pred: the argmax token.
    """

    prompts: PromptSet
    layers: list[int]
    resid_post: Float[torch.Tensor, "n layer d_model"]
    mlp_out: Float[torch.Tensor, "n layer d_model"]
    z: Float[torch.Tensor, "n layer head d_head"]
    attn_arg: Float[torch.Tensor, "n layer head"]
    attn_first: Float[torch.Tensor, "n layer head"]
    final_resid: Float[torch.Tensor, "n d_model"]
    final_mlp_out: Float[torch.Tensor, "n d_model"]
    answer_prob: Float[torch.Tensor, "n"]
    answer_rank: Int[torch.Tensor, "n"]
    pred: Int[torch.Tensor, "n"]

    @property
    def correct(self) -> torch.Tensor:
        """Whether the answer's first token is the argmax, per prompt."""
        return self.pred == torch.tensor(self.prompts.answer_ids)

    @property
    def final_mid(self) -> Float[torch.Tensor, "n d_model"]:
        """The residual stream after the final layer's attention, before its MLP."""
        return self.final_resid - self.final_mlp_out

    def layer_index(self, layer: int) -> int:
        """Position of ``layer`` in :attr:`layers`."""
        if layer not in self.layers:
            raise InterpError(f"layer {layer} was not captured (captured: {self.layers})")
        return self.layers.index(layer)

    def only_layers(self, layers: Sequence[int]) -> "RecallActivations":
        """The same prompts with the per-layer tensors cut to some captured layers."""
        j = torch.tensor([self.layer_index(L) for L in layers], dtype=torch.long)
        out = RecallActivations(self.prompts, list(layers), self.resid_post[:, j], self.mlp_out[:, j], self.z[:, j],
                                self.attn_arg[:, j], self.attn_first[:, j], self.final_resid, self.final_mlp_out,
                                self.answer_prob, self.answer_rank, self.pred)
        return out.with_streams(*self.streams) if self.streams else out

    @property
    def streams(self) -> Optional[tuple[int, list[torch.Tensor]]]:
        """``(start, per-prompt streams)``: the residual stream entering block ``start`` at every
        position after the prompt's shared prefix, kept by the activation pass for
        :func:`prompt_tails` (None when it was not kept, e.g. after a resumed stage: they are not
        stored)."""
        return self.__dict__.get("_streams")

    def with_streams(self, start: int, streams: Sequence[torch.Tensor]) -> "RecallActivations":
        """Attach :attr:`streams` (one tensor per prompt, in prompt order); returns ``self``."""
        if len(streams) != len(self.prompts):
            raise InterpError(f"{len(streams)} streams for {len(self.prompts)} prompts")
        self.__dict__["_streams"] = (int(start), list(streams))
        self.__dict__.pop("_tails", None)
        return self

    def subset(self, rows: Sequence[int]) -> "RecallActivations":
        """The activations of some prompts only (the prompt set is subset too)."""
        idx = torch.tensor(list(rows), dtype=torch.long)
        p = self.prompts
        sub = PromptSet(p.shots, [p.facts[i] for i in rows], [p.templates[i] for i in rows], [p.texts[i] for i in rows],
                        dict(p.prefixes), [p.token_ids[i] for i in rows], [p.arg_positions[i] for i in rows],
                        [p.answer_ids[i] for i in rows], [p.arg_token_ids[i] for i in rows], dict(p.meta))
        out = RecallActivations(sub, list(self.layers), self.resid_post[idx], self.mlp_out[idx], self.z[idx],
                                self.attn_arg[idx], self.attn_first[idx], self.final_resid[idx],
                                self.final_mlp_out[idx], self.answer_prob[idx], self.answer_rank[idx], self.pred[idx])
        if self.streams:
            start, st = self.streams
            out.with_streams(start, [st[i] for i in rows])
        return out


def prefix_groups(prompts: PromptSet) -> list[list[int]]:
    """Prompt indices grouped by shared prefix: one group per relation few-shot, one group zero-shot."""
    groups: dict[Optional[str], list[int]] = {}
    for i, f in enumerate(prompts.facts):
        groups.setdefault(prompts.prefixes[f.relation], []).append(i)
    return list(groups.values())


def prompt_inputs(model: Model, prompts: PromptSet, rows: Sequence[int]) -> tuple[Optional[str], list[list[int]], int]:
    """The shared prefix and the token ids after it, for prompts that share one prefix.

    Returns:
        ``(prefix, ids, prefix_len)``.
    """
    prefixes = {prompts.prefixes[prompts.facts[i].relation] for i in rows}
    if len(prefixes) != 1:
        raise InterpError("prompt_inputs takes prompts that share one prefix (see prefix_groups)")
    prefix = prefixes.pop()
    P = len(model.encode(prefix)) if prefix else 0
    return prefix, [prompts.token_ids[i][P:] for i in rows], P


CHUNK_BATCHES = 4  # forward batches per chunk of the activation pass (the unit ranks share)


def prompt_tails(model: Model, acts: RecallActivations, start: int, batch_size: int) -> Optional[list[TailCache]]:
    """One :class:`~interp.tail.TailCache` per prefix group of ``acts``' prompts, made once and kept on
    ``acts`` (None where the model's blocks cannot be resumed, or ``start`` is the first block)."""
    if start < 1 or not tail_supported(model):
        return None
    kept = acts.__dict__.setdefault("_tails", {})
    if start not in kept:
        tails = []
        streams = acts.streams[1] if acts.streams and acts.streams[0] == start else None
        for rows in prefix_groups(acts.prompts):
            prefix, ids, _ = prompt_inputs(model, acts.prompts, rows)
            pre = model.encode(prefix) if prefix else None
            if streams is None:
                tails.append(TailCache(model, ids, start, batch_size, prefix=pre))
                continue
            # the activation pass kept these streams: only the shared prefix's own stream is run here
            head = capture(model, [pre], hooks=[model.hook("resid_post", start - 1)], positions="all", progress=False,
                           dtype=torch.float32).acts[model.hook("resid_post", start - 1)][0].float() if pre else None
            tails.append(TailCache.from_streams(model, ids, start, [streams[i] for i in rows], batch_size, prefix=pre,
                                                prefix_stream=head))
        kept[start] = tails
    return kept[start]


def group_answer_scores(model: Model, acts: RecallActivations, g: int, rows: Sequence[int], tails: Optional[list[TailCache]],
                        batch_size: int, desc: str, last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Answer probability and correctness (the answer is the argmax) of prefix group ``g`` (its prompt
    ``rows``) under whatever hooks are active: from its :class:`~interp.tail.TailCache` when ``tails``
    (:func:`prompt_tails`) is given, batch by batch, else from a whole capture on the group's shared
    prefix. ``last_only``: the hooks change nothing the last position reads at earlier positions, so
    the tails re-run the last token alone (:meth:`~interp.tail.TailCache.logits`)."""
    ans = torch.tensor([acts.prompts.answer_ids[i] for i in rows])
    if tails is not None:
        logp, top = tails[g].answer_scores(ans.tolist(), desc=desc, last_only=last_only)
        return logp.exp(), top
    prefix, ids, _ = prompt_inputs(model, acts.prompts, rows)
    lg = capture(model, ids, prefix=prefix, logits=True, batch_size=batch_size, desc=desc).logits
    return target_logprobs(lg, ans).exp().cpu(), lg.argmax(-1).cpu() == ans


def activation_chunks(prompts: PromptSet, batch_size: int) -> list[list[int]]:
    """The prompt rows of each chunk: each prefix group cut into runs of ``CHUNK_BATCHES`` batches.

    Chunks are whole batches of one group, so a chunk is batched (and padded) exactly as the
    group's single capture call would batch it, whichever rank runs it."""
    size = batch_size * CHUNK_BATCHES
    return [rows[i : i + size] for rows in prefix_groups(prompts) for i in range(0, len(rows), size)]


def collect_activations(
    model: Model,
    prompts: PromptSet,
    layers: Optional[Sequence[int]] = None,
    batch_size: int = 32,
    dtype: torch.dtype = torch.float32,
    shard_dir: Optional[Union[str, Path]] = None,
    final_streams: bool = True,
) -> Optional[RecallActivations]:
    """Run every prompt once and keep the last-position activations the analyses need.

    Args:
        model: the model.
        prompts: from :func:`interp.recall.facts.build_prompts`.
        layers: layers to keep (default: all).
        batch_size: prompts per forward pass.
        dtype: storage dtype of the kept activations.
        shard_dir: a folder for per-chunk files. With it the pass is shared among ``torchrun``
            ranks (:mod:`interp.distributed`: rank 0 dispatches it, every rank runs its chunks)
            and resumes chunk by chunk; without it one process runs everything in memory.
        final_streams: also keep, from the same passes, the residual stream entering the final
            block at every position (:attr:`RecallActivations.streams`), so that interventions in
            the final block (the mitigation's candidates) re-run only that block without first
            running the prompts again (where the model's blocks can be resumed: :mod:`interp.tail`).

    Returns:
        The :class:`RecallActivations` (None on ranks other than 0).
    """
    layers = list(range(model.n_layers)) if layers is None else sorted({int(x) % model.n_layers for x in layers})
    if shard_dir is not None:
        distributed.dispatch("interp.recall.activations:collect_activations", prompts=prompts, layers=layers,
                             batch_size=batch_size, dtype=dtype, shard_dir=shard_dir, final_streams=final_streams)
    last = model.n_layers - 1
    H = model.n_heads
    hooks: list[str] = []
    for L in layers:
        hooks += [model.hook("resid_post", L), model.hook("mlp_out", L), model.hook("z", L), model.hook("pattern", L)]
    final_hook = model.hook("resid_post", last)
    final_mlp_hook = model.hook("mlp_out", last)
    for h in (final_hook, final_mlp_hook):
        if h not in hooks:
            hooks.append(h)
    chunks = activation_chunks(prompts, batch_size)
    stream_hook = model.hook("resid_post", last - 1) if final_streams and last >= 1 and tail_supported(model) else None

    def compute(k: int) -> dict[str, torch.Tensor]:
        rows = chunks[k]
        prefix, ids, _ = prompt_inputs(model, prompts, rows)
        cap = capture(model, ids, hooks=hooks, positions="last", prefix=prefix, logits=True, batch_size=batch_size,
                      progress=False, every_position=[stream_hook] if stream_hook else [])
        n, nl = len(rows), len(layers)
        out = {"attn_arg": torch.zeros(n, nl, H), "attn_first": torch.zeros(n, nl, H)}
        out["resid_post"] = torch.stack([cap.acts[model.hook("resid_post", L)].to(dtype) for L in layers], 1)
        out["mlp_out"] = torch.stack([cap.acts[model.hook("mlp_out", L)].to(dtype) for L in layers], 1)
        out["z"] = torch.stack([cap.acts[model.hook("z", L)].to(dtype) for L in layers], 1)
        for j, L in enumerate(layers):
            pat = cap.acts[model.hook("pattern", L)].float()  # [n, head, key]
            out["attn_first"][:, j] = pat[:, :, 0]
            for r, i in enumerate(rows):
                out["attn_arg"][r, j] = pat[r][:, prompts.arg_positions[i]].sum(-1)
        out["final_resid"] = cap.acts[final_hook].float()
        out["final_mlp_out"] = cap.acts[final_mlp_hook].float()
        a, rank = target_logprobs_ranks(cap.logits, torch.tensor([prompts.answer_ids[i] for i in rows]))
        out["answer_prob"], out["answer_rank"], out["pred"] = a.exp(), rank, cap.logits.argmax(-1)
        if stream_hook:  # ragged: one flat tensor and the lengths
            st = cap.every[stream_hook]
            out["stream"] = torch.cat([x.float() for x in st])
            out["stream_len"] = torch.tensor([len(x) for x in st])
        return out

    key = {"pass": "recall-activations-v1", "streams": stream_hook, "model": model.weight_hash, "layers": layers, "batch_size": batch_size,
           "dtype": str(dtype), "precision": model.precision, "prompts": hashlib.sha256("\x00".join(prompts.texts).encode()).hexdigest()[:20]}
    parts = distributed.map_chunks(len(chunks), compute, None if shard_dir is None else Path(shard_dir), key,
                                   desc=f"recall prompts ({prompts.shots}-shot)")
    if parts is None:
        return None
    if not parts:
        nl, d = len(layers), model.d_model
        z3, z2 = torch.zeros(0, nl, d, dtype=dtype), torch.zeros(0, d)
        return RecallActivations(prompts, layers, z3, z3, torch.zeros(0, nl, H, model.d_head, dtype=dtype),
                                 torch.zeros(0, nl, H), torch.zeros(0, nl, H), z2, z2, torch.zeros(0),
                                 torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    order = torch.tensor([i for rows in chunks for i in rows], dtype=torch.long)
    inv = torch.empty_like(order)
    inv[order] = torch.arange(len(order))

    def cat(name: str) -> torch.Tensor:
        return torch.cat([c[name] for c in parts])[inv]

    acts = RecallActivations(prompts, layers, cat("resid_post"), cat("mlp_out"), cat("z"), cat("attn_arg"),
                             cat("attn_first"), cat("final_resid"), cat("final_mlp_out"), cat("answer_prob"),
                             cat("answer_rank"), cat("pred"))
    if stream_hook:
        per_row = [x for c in parts for x in torch.split(c["stream"], c["stream_len"].tolist())]
        acts.with_streams(last, [per_row[j] for j in inv.tolist()])
    return acts
