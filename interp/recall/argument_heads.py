"""Argument-passing heads: heads that move the argument ("France") to the last position.

For every head ``(l, h)`` and prompt ``p`` two quantities are read at the last position:

* ``attn_arg[p, l, h]``: attention paid to the argument's tokens;
* ``dla_arg[p, l, h]``: the head's direct logit attribution onto the argument's own unembedding
  ``W_U[:, arg]`` (the head writes the argument into the residual stream).

A head's score is ``mean_p attn_arg * max(mean_p dla_arg, 0)``: it must both look at the argument
and write it. The causal check mean-ablates the top-k heads at the last position (each head's
``hook_z`` replaced by its mean over the same relation's prompts) and compares the drop in answer
probability with the drop from k random heads of the same layers, averaged over seeded draws.
"""

from __future__ import annotations

import random
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float

from interp.errors import InterpError
from interp.model import Model
from interp.recall.ablation import Head, ablate_heads, head_name
from interp.recall.activations import RecallActivations, group_answer_scores, prefix_groups, prompt_tails
from interp.recall.attribution import direct_logit_attribution


def head_outputs(model: Model, acts: RecallActivations) -> Float[torch.Tensor, "n layer head d_model"]:
    """Each captured head's write into the residual stream at the last position."""
    with torch.no_grad():
        return torch.stack([model.head_outputs(acts.z[:, j].float(), L).detach().float().cpu()
                            for j, L in enumerate(acts.layers)], dim=1)


def argument_head_scores(model: Model, acts: RecallActivations, rows: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """Per-head attention to the argument, direct logit attribution onto it, and the combined score.

    Args:
        model: the model.
        acts: captured activations.
        rows: prompts to average over (default: all).

    Returns:
        One row per (relation, layer, head) plus relation ``"all"``: ``attn_arg``, ``dla_arg``,
        ``score``, ``n``.
    """
    rows = list(range(len(acts.prompts))) if rows is None else list(rows)
    sub = acts.subset(rows)
    out = head_outputs(model, sub)
    dla = direct_logit_attribution(model, out, sub.final_resid, torch.tensor(sub.prompts.arg_token_ids))
    rels = [f.relation for f in sub.prompts.facts]
    table = []
    for rel in ["all"] + sub.prompts.relations:
        idx = torch.tensor([i for i, r in enumerate(rels) if rel == "all" or r == rel])
        a = sub.attn_arg[idx].mean(0)
        d = dla[idx].mean(0)
        for j, L in enumerate(sub.layers):
            for h in range(model.n_heads):
                table.append({"relation": rel, "shots": sub.prompts.shots, "layer": L, "head": h, "name": f"{L}.{h}",
                              "attn_arg": float(a[j, h]), "dla_arg": float(d[j, h]),
                              "score": float(a[j, h] * max(float(d[j, h]), 0.0)), "n": len(idx)})
    return pd.DataFrame(table)


def top_argument_heads(scores: pd.DataFrame, k: int, relation: str = "all", min_layer: int = 1) -> list[Head]:
    """The ``k`` heads with the highest score, ties by attention (layers below ``min_layer`` excluded)."""
    g = scores[(scores["relation"] == relation) & (scores["layer"] >= min_layer)]
    g = g.sort_values(["score", "attn_arg"], ascending=False).head(k)
    return [(int(r.layer), int(r.head)) for r in g.itertuples()]


def relation_mean_z(acts: RecallActivations, layers: Sequence[int]) -> dict[int, Float[torch.Tensor, "n head d_head"]]:
    """Per prompt, the mean ``hook_z`` over all prompts of its relation (mean-ablation values)."""
    rels = [f.relation for f in acts.prompts.facts]
    out = {}
    for L in layers:
        j = acts.layer_index(L)
        m = torch.zeros_like(acts.z[:, j], dtype=torch.float32)
        for rel in acts.prompts.relations:
            idx = torch.tensor([i for i, r in enumerate(rels) if r == rel])
            m[idx] = acts.z[idx, j].float().mean(0)
        out[L] = m
    return out


def _mean_ablated_probs(model: Model, acts: RecallActivations, heads: list[Head], means: dict, batch_size: int, desc: str,
                        from_layer: Optional[int] = None, last_only: bool = True) -> torch.Tensor:
    """Answer probability of each prompt with ``heads`` mean-ablated at the last position.

    Prompts run in one capture per shared prefix; the per-prompt means are indexed by capture rows,
    so they are re-based to each group's rows here. ``from_layer`` (at most the heads' first layer)
    re-runs only the blocks from there on, from residual streams kept on ``acts``
    (:func:`~interp.recall.activations.prompt_tails`; exact), where the model allows it, and with
    ``last_only`` on the last token alone: the ablation changes no earlier position.
    """
    p = acts.prompts
    prob = torch.zeros(len(p))
    tails = prompt_tails(model, acts, from_layer, batch_size) if from_layer is not None else None
    for g, rows in enumerate(prefix_groups(p)):
        idx = torch.tensor(rows)
        m = {L: means[L][idx] for L in {h[0] for h in heads}}
        with ablate_heads(model, heads, mode="mean", means=m, positions="last"):  # the last position only
            prob[idx] = group_answer_scores(model, acts, g, rows, tails, batch_size, desc, last_only=last_only)[0]
    return prob


def random_heads_like(model: Model, heads: Sequence[Head], rng: random.Random) -> list[Head]:
    """As many random heads as ``heads``, from the same layers, none of them in ``heads``."""
    layers = sorted({L for L, _ in heads})
    pool = [(L, h) for L in layers for h in range(model.n_heads) if (L, h) not in set(heads)]
    if len(pool) < len(heads):
        pool = [(L, h) for L in range(model.n_layers) for h in range(model.n_heads) if (L, h) not in set(heads)]
    return sorted(rng.sample(pool, len(heads)))


def argument_ablation(
    model: Model,
    acts: RecallActivations,
    heads: Sequence[Head],
    n_random: int = 5,
    seed: int = 0,
    batch_size: int = 32,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Mean-ablate the argument heads vs random heads of the same layers; answer probability drops.

    Args:
        model: the model.
        acts: activations of the prompts to test (their means are the ablation values).
        heads: the argument heads.
        n_random: random draws to average.
        seed: seed of the draws.
        batch_size: prompts per forward pass.

    Returns:
        ``(summary, per_draw)``: summary has ``base_prob``, ``argument_prob``, ``random_prob``,
        ``argument_ablation_drop``, ``random_ablation_drop`` (mean over draws), ``random_drop_std``;
        ``per_draw`` has one row per ablation (which heads, mean answer probability, drop).
    """
    heads = list(heads)
    if not heads:
        raise InterpError("no argument heads to ablate")
    rng = random.Random(seed)
    draws = [random_heads_like(model, heads, rng) for _ in range(n_random)]
    layers = sorted({L for L, _ in heads + [x for d in draws for x in d]})
    means = relation_mean_z(acts, layers)
    base = float(acts.answer_prob.mean())
    rows = []
    start = layers[0]  # no ablation acts before this block
    arg = float(_mean_ablated_probs(model, acts, heads, means, batch_size, "ablate argument heads", start).mean())
    rows.append({"ablation": "argument heads", "draw": -1, "heads": ",".join(map(head_name, heads)), "answer_prob": arg, "drop": base - arg})
    rnd = []
    for i, d in enumerate(draws):
        p = float(_mean_ablated_probs(model, acts, d, means, batch_size, f"ablate random heads {i + 1}/{n_random}", start).mean())
        rnd.append(p)
        rows.append({"ablation": "random heads", "draw": i, "heads": ",".join(map(head_name, d)), "answer_prob": p, "drop": base - p})
    summary = {"base_prob": base, "argument_prob": arg, "random_prob": float(np.mean(rnd)) if rnd else float("nan"),
               "argument_ablation_drop": base - arg,
               "random_ablation_drop": base - float(np.mean(rnd)) if rnd else float("nan"),
               "random_drop_std": float(np.std([base - r for r in rnd])) if rnd else float("nan")}
    return summary, pd.DataFrame(rows)
