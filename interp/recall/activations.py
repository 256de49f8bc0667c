"""The one capture pass every recall analysis reads: last-position activations of each prompt.

For each relation (its k-shot demonstrations are a shared prefix, run once through the KV cache)
one :func:`interp.capture` call keeps, at the last position only: the residual stream after each
layer, each MLP's output, each head's ``hook_z`` and each head's attention pattern, which is at
once reduced to the attention paid to the argument's tokens and to the first position. The answer's
probability and rank come from the logits of the same pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from jaxtyping import Float, Int

from interp.capture import capture
from interp.errors import InterpError
from interp.model import Model
from interp.recall.facts import PromptSet


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
        return RecallActivations(self.prompts, list(layers), self.resid_post[:, j], self.mlp_out[:, j], self.z[:, j],
                                 self.attn_arg[:, j], self.attn_first[:, j], self.final_resid, self.final_mlp_out,
                                 self.answer_prob, self.answer_rank, self.pred)

    def subset(self, rows: Sequence[int]) -> "RecallActivations":
        """The activations of some prompts only (the prompt set is subset too)."""
        idx = torch.tensor(list(rows), dtype=torch.long)
        p = self.prompts
        sub = PromptSet(p.shots, [p.facts[i] for i in rows], [p.templates[i] for i in rows], [p.texts[i] for i in rows],
                        dict(p.prefixes), [p.token_ids[i] for i in rows], [p.arg_positions[i] for i in rows],
                        [p.answer_ids[i] for i in rows], [p.arg_token_ids[i] for i in rows], dict(p.meta))
        return RecallActivations(sub, list(self.layers), self.resid_post[idx], self.mlp_out[idx], self.z[idx],
                                 self.attn_arg[idx], self.attn_first[idx], self.final_resid[idx],
                                 self.final_mlp_out[idx], self.answer_prob[idx], self.answer_rank[idx], self.pred[idx])


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


def collect_activations(
    model: Model,
    prompts: PromptSet,
    layers: Optional[Sequence[int]] = None,
    batch_size: int = 32,
    dtype: torch.dtype = torch.float32,
) -> RecallActivations:
    """Run every prompt once and keep the last-position activations the analyses need.

    Args:
        model: the model.
        prompts: from :func:`interp.recall.facts.build_prompts`.
        layers: layers to keep (default: all).
        batch_size: prompts per forward pass.
        dtype: storage dtype of the kept activations.

    Returns:
        The :class:`RecallActivations`.
    """
    layers = list(range(model.n_layers)) if layers is None else sorted({int(x) % model.n_layers for x in layers})
    last = model.n_layers - 1
    n, nl, H = len(prompts), len(layers), model.n_heads
    resid = torch.zeros(n, nl, model.d_model, dtype=dtype)
    mlp = torch.zeros(n, nl, model.d_model, dtype=dtype)
    z = torch.zeros(n, nl, H, model.d_head, dtype=dtype)
    attn_arg = torch.zeros(n, nl, H)
    attn_first = torch.zeros(n, nl, H)
    final = torch.zeros(n, model.d_model, dtype=torch.float32)
    final_mlp = torch.zeros(n, model.d_model, dtype=torch.float32)
    prob = torch.zeros(n)
    rank = torch.zeros(n, dtype=torch.long)
    pred = torch.zeros(n, dtype=torch.long)
    hooks: list[str] = []
    for L in layers:
        hooks += [model.hook("resid_post", L), model.hook("mlp_out", L), model.hook("z", L), model.hook("pattern", L)]
    final_hook = model.hook("resid_post", last)
    final_mlp_hook = model.hook("mlp_out", last)
    for h in (final_hook, final_mlp_hook):
        if h not in hooks:
            hooks.append(h)
    for rows in prefix_groups(prompts):
        prefix, ids, _ = prompt_inputs(model, prompts, rows)
        cap = capture(model, ids, hooks=hooks, positions="last", prefix=prefix, logits=True, batch_size=batch_size,
                      desc=f"recall prompts ({prompts.shots}-shot)")
        idx = torch.tensor(rows)
        for j, L in enumerate(layers):
            resid[idx, j] = cap.acts[model.hook("resid_post", L)].to(dtype)
            mlp[idx, j] = cap.acts[model.hook("mlp_out", L)].to(dtype)
            z[idx, j] = cap.acts[model.hook("z", L)].to(dtype)
            pat = cap.acts[model.hook("pattern", L)].float()  # [n, head, key]
            attn_first[idx, j] = pat[:, :, 0]
            for r, i in enumerate(rows):
                attn_arg[i, j] = pat[r][:, prompts.arg_positions[i]].sum(-1)
        final[idx] = cap.acts[final_hook].float()
        final_mlp[idx] = cap.acts[final_mlp_hook].float()
        logp = torch.log_softmax(cap.logits.float(), dim=-1)
        ans = torch.tensor([prompts.answer_ids[i] for i in rows])
        a = logp.gather(1, ans[:, None])[:, 0]
        prob[idx] = a.exp()
        rank[idx] = (logp > a[:, None]).sum(-1)
        pred[idx] = logp.argmax(-1)
    return RecallActivations(prompts, layers, resid, mlp, z, attn_arg, attn_first, final, final_mlp, prob, rank, pred)
