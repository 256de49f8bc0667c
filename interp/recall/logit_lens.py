"""Layer-wise answer probability and rank (logit lens with the final norm).

The residual stream after layer ``l`` at the last position is read out as the model reads its last
layer, ``softmax(W_U^T ln_final(x_l) + b_U)``. Where the answer's probability peaks and how much of
it the last layers take away is the paper's first observation (the anti-overconfidence drop).
"""

from __future__ import annotations

import os
import pandas as pd
import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from interp.model import Model
from interp.recall.activations import RecallActivations


def answer_prob_by_layer(
    model: Model, acts: RecallActivations, chunk: int = 256
) -> tuple[Float[torch.Tensor, "n layer"], Float[torch.Tensor, "n layer"]]:
    """Logit-lens probability and rank of the answer after every captured layer.

    Args:
        model: the model.
        acts: captured activations.
        chunk: residual vectors unembedded at once.

    Returns:
        ``(prob, rank)``, each ``[n, layer]``.
    """
    n, nl, d = acts.resid_post.shape
    flat = acts.resid_post.reshape(n * nl, d)
    ans = torch.tensor(acts.prompts.answer_ids).repeat_interleave(nl)
    probs = torch.zeros(n * nl)
    ranks = torch.zeros(n * nl)
    with torch.no_grad():
        for a in tqdm(range(0, n * nl, chunk), desc="logit lens", disable=n * nl <= 4 * chunk or os.environ.get("INTERP_PROGRESS", "1") == "0", unit="chunk"):
            x = flat[a : a + chunk].to(model.device, model.dtype)
            logp = torch.log_softmax(model.unembed(x).float(), -1).cpu()
            t = logp.gather(1, ans[a : a + chunk, None])
            probs[a : a + chunk] = t[:, 0].exp()
            ranks[a : a + chunk] = (logp > t).sum(-1).float()
    return probs.reshape(n, nl), ranks.reshape(n, nl)


def logit_lens_table(model: Model, acts: RecallActivations, rows: list[int] | None = None) -> pd.DataFrame:
    """Mean answer probability, median rank and accuracy per relation and layer.

    Args:
        model: the model.
        acts: captured activations.
        rows: prompts to include (default: all).

    Returns:
        One row per (relation, layer) with ``shots``, ``layer``, ``answer_prob``, ``answer_rank_median``,
        ``top1`` and ``n``; relation ``"all"`` pools every relation.
    """
    rows = list(range(len(acts.prompts))) if rows is None else list(rows)
    sub = acts.subset(rows)
    prob, rank = answer_prob_by_layer(model, sub)
    rels = [f.relation for f in sub.prompts.facts]
    out = []
    for rel in ["all"] + sub.prompts.relations:
        idx = torch.tensor([i for i, r in enumerate(rels) if rel == "all" or r == rel])
        for j, L in enumerate(sub.layers):
            out.append({"relation": rel, "shots": sub.prompts.shots, "layer": L,
                        "answer_prob": float(prob[idx, j].mean()), "answer_rank_median": float(rank[idx, j].median()),
                        "top1": float((rank[idx, j] == 0).float().mean()), "n": len(idx)})
    return pd.DataFrame(out)


def final_drop(table: pd.DataFrame) -> pd.DataFrame:
    """Per relation and shot form: peak logit-lens answer probability, its layer, and the final value."""
    rows = []
    for (rel, shots), g in table.groupby(["relation", "shots"], sort=False):
        g = g.sort_values("layer")
        peak = g.loc[g["answer_prob"].idxmax()]
        fin = g.iloc[-1]
        rows.append({"relation": rel, "shots": shots, "peak_layer": int(peak["layer"]), "peak_prob": float(peak["answer_prob"]),
                     "final_prob": float(fin["answer_prob"]), "drop": float(peak["answer_prob"] - fin["answer_prob"])})
    return pd.DataFrame(rows)
