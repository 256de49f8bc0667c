"""Layer-wise answer probability and rank (logit lens with the final norm), with the final layer split.

The residual stream ``x`` at the last position is read out as the model reads its last layer,
``softmax(W_U^T ln_final(x) + b_U)``, after every layer (``hook_resid_post``) and once more inside
the final layer ``L-1``, after its attention and before its MLP (``blocks.{L-1}.hook_resid_mid``,
``x_mid = x_{L-1} - mlp_{L-1}``; reported at layer ``L - 1.5``). Where the answer's probability
peaks and how much of it the last layers take away is the paper's first observation (the
anti-overconfidence drop); the split says whether the final attention or the final MLP takes it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd
import torch
from jaxtyping import Float
from interp.progress import track

from interp.model import Model
from interp.recall.activations import RecallActivations
from interp.scoring import target_logprobs_ranks


def readout_answer(
    model: Model, resid: Float[torch.Tensor, "m d_model"], answer_ids: torch.Tensor, chunk: int = 256
) -> tuple[Float[torch.Tensor, "m"], Float[torch.Tensor, "m"]]:
    """Logit-lens probability and rank (0 = argmax) of one answer token per residual vector."""
    m = len(resid)
    probs, ranks = torch.zeros(m), torch.zeros(m)
    with torch.no_grad():
        for a in track(range(0, m, chunk), desc="logit lens", disable=m <= 4 * chunk,
                      unit="chunk"):
            x = resid[a : a + chunk].to(model.device, model.dtype)
            lp, rk = target_logprobs_ranks(model.unembed(x), answer_ids[a : a + chunk])
            probs[a : a + chunk] = lp.exp().cpu()
            ranks[a : a + chunk] = rk.float().cpu()
    return probs, ranks


def answer_prob_by_layer(
    model: Model, acts: RecallActivations, chunk: int = 256
) -> tuple[Float[torch.Tensor, "n layer"], Float[torch.Tensor, "n layer"]]:
    """Logit-lens probability and rank of the answer after every captured layer.

    The final layer's stream is what the model itself reads out, so its column is the capture's
    own answer probability and rank (:attr:`RecallActivations.answer_prob`), not another product
    with the unembedding.

    Args:
        model: the model.
        acts: captured activations.
        chunk: residual vectors unembedded at once.

    Returns:
        ``(prob, rank)``, each ``[n, layer]``.
    """
    n, nl, d = acts.resid_post.shape
    read = [j for j, L in enumerate(acts.layers) if L != model.n_layers - 1]
    probs, ranks = torch.zeros(n, nl), torch.zeros(n, nl)
    if read:
        ans = torch.tensor(acts.prompts.answer_ids).repeat_interleave(len(read))
        p, r = readout_answer(model, acts.resid_post[:, read].reshape(n * len(read), d), ans, chunk)
        probs[:, read], ranks[:, read] = p.reshape(n, len(read)), r.reshape(n, len(read))
    if len(read) < nl:
        j = acts.layers.index(model.n_layers - 1)
        probs[:, j], ranks[:, j] = acts.answer_prob.float(), acts.answer_rank.float()
    return probs, ranks


def answer_prob_after_final_attention(model: Model, acts: RecallActivations) -> tuple[Float[torch.Tensor, "n"], Float[torch.Tensor, "n"]]:
    """Logit-lens probability and rank of the answer from ``blocks.{L-1}.hook_resid_mid``."""
    return readout_answer(model, acts.final_mid, torch.tensor(acts.prompts.answer_ids))


def logit_lens_table(model: Model, acts: RecallActivations, rows: Optional[Sequence[int]] = None,
                     subsets: Optional[dict[str, Sequence[int]]] = None) -> pd.DataFrame:
    """Mean answer probability, median rank and accuracy per fact subset, relation and read-out point.

    Args:
        model: the model.
        acts: captured activations.
        rows: prompts to include (default: all), one subset labelled ``"analysed"``.
        subsets: label -> prompt rows (e.g. ``{"all": ..., "known": ...}``); overrides ``rows``.

    Returns:
        One row per (facts, relation, layer) with ``shots``, ``layer`` (``L - 1.5`` for the point
        after the final attention), ``point`` (``resid_post`` / ``resid_mid``), ``answer_prob``,
        ``answer_rank_median``, ``top1`` and ``n``; relation ``"all"`` pools every relation.
    """
    if subsets is None:
        subsets = {"analysed": list(range(len(acts.prompts))) if rows is None else list(rows)}
    prob, rank = answer_prob_by_layer(model, acts)
    last = model.n_layers - 1
    if last in acts.layers:
        mp, mr = answer_prob_after_final_attention(model, acts)
        j = acts.layers.index(last)
        prob = torch.cat([prob[:, :j], mp[:, None], prob[:, j:]], 1)
        rank = torch.cat([rank[:, :j], mr[:, None], rank[:, j:]], 1)
        points = [(L, "resid_post") for L in acts.layers[:j]] + [(last - 0.5, "resid_mid")] + [(L, "resid_post") for L in acts.layers[j:]]
    else:
        points = [(L, "resid_post") for L in acts.layers]
    rels = [f.relation for f in acts.prompts.facts]
    out = []
    for label, sub_rows in subsets.items():
        sub_rows = list(sub_rows)
        for rel in ["all"] + acts.prompts.relations:
            idx = torch.tensor([i for i in sub_rows if rel == "all" or rels[i] == rel], dtype=torch.long)
            if not len(idx):
                continue
            for j, (L, point) in enumerate(points):
                out.append({"facts": label, "relation": rel, "shots": acts.prompts.shots, "layer": L, "point": point,
                            "answer_prob": float(prob[idx, j].mean()), "answer_rank_median": float(rank[idx, j].median()),
                            "top1": float((rank[idx, j] == 0).float().mean()), "n": len(idx)})
    return pd.DataFrame(out)


def final_drop(table: pd.DataFrame) -> pd.DataFrame:
    """Per fact subset, relation and shot form: peak logit-lens answer probability, its layer, the
    final value, and the final layer split into its attention and MLP steps.

    Columns ``prob_before_final_layer`` (after layer ``L-2``), ``prob_after_final_attention``
    (``resid_mid``), ``final_prob``; ``final_attention_change`` and ``final_mlp_change`` are the
    differences between consecutive points.
    """
    rows = []
    keys = [k for k in ("facts", "relation", "shots") if k in table.columns]
    for key, g in table.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        g = g.sort_values("layer")
        peak = g.loc[g["answer_prob"].idxmax()]
        fin = g.iloc[-1]
        r = dict(zip(keys, key))
        r.update({"peak_layer": float(peak["layer"]), "peak_prob": float(peak["answer_prob"]),
                  "final_prob": float(fin["answer_prob"]), "drop": float(peak["answer_prob"] - fin["answer_prob"])})
        if "point" in g.columns and (g["point"] == "resid_mid").any():
            mid = float(g.loc[g["point"] == "resid_mid", "answer_prob"].iloc[0])
            post = g[g["point"] == "resid_post"]
            before = float(post["answer_prob"].iloc[-2]) if len(post) >= 2 else float("nan")
            r.update({"prob_before_final_layer": before, "prob_after_final_attention": mid,
                      "final_attention_change": mid - before, "final_mlp_change": float(fin["answer_prob"]) - mid})
        rows.append(r)
    return pd.DataFrame(rows)
