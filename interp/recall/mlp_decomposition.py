r"""MLP decomposition: an *activation* part and a *function application* part.

For one task (relation) and one MLP layer ``l``, with ``m_p`` the MLP's output at the last position
of prompt ``p`` and ``h_{p,i}`` the outputs of the heads that feed it (every head of layer ``l``
plus the argument heads of earlier layers), fit across the task's ``n`` prompts

.. math::

    m_p \approx \sum_i \alpha_i \, h_{p,i} + \beta

with one scalar :math:`\alpha_i` per head and one vector :math:`\beta \in R^{d_{model}}`, shared by
all prompts of the task. The coefficients are the **activation** part: :math:`\alpha_i > 0`
amplifies head ``i``'s output, :math:`\alpha_i \approx -1` erases it. The intercept :math:`\beta`
is the **function application** part, a task-specific direction added whatever the argument is
(an implicit ``get_capital(X)``); read through the unembedding it should promote the task's answers.

Least squares over prompts and residual dimensions: with centred values
:math:`\tilde m_p = m_p - \bar m`, :math:`\tilde h_{p,i} = h_{p,i} - \bar h_i`,

.. math::

    G_{ij} = \sum_p \langle \tilde h_{p,i}, \tilde h_{p,j} \rangle, \quad
    c_i = \sum_p \langle \tilde h_{p,i}, \tilde m_p \rangle, \quad
    \alpha = (G + \lambda I)^{-1} c, \quad \beta = \bar m - \sum_i \alpha_i \bar h_i,

and fit quality :math:`R^2 = 1 - \sum_p \lVert \tilde m_p - \sum_i \alpha_i \tilde h_{p,i} \rVert^2
/ \sum_p \lVert \tilde m_p \rVert^2` (variance across prompts explained by the activation part).
The intercept's share of the output is :math:`n \lVert \beta \rVert^2 / \sum_p \lVert m_p \rVert^2`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float

from interp.errors import InterpError
from interp.model import Model
from interp.recall.ablation import Head
from interp.recall.activations import RecallActivations
from interp.recall.argument_heads import head_outputs
from interp.recall.attribution import component_logits, final_norm_linear


@dataclass
class MLPDecomposition:
    """The fit for one relation and layer: coefficients, intercept and quality."""

    layer: int
    heads: list[Head]
    alpha: Float[torch.Tensor, "k"]
    intercept: Float[torch.Tensor, "d_model"]
    r2: float
    intercept_share: float
    n: int


def fit_mlp_decomposition(
    mlp_out: Float[torch.Tensor, "n d_model"],
    head_out: Float[torch.Tensor, "n k d_model"],
    heads: Sequence[Head],
    layer: int,
    ridge: float = 1e-6,
) -> MLPDecomposition:
    """Least-squares fit of ``m_p = sum_i alpha_i h_{p,i} + beta`` (see the module docstring).

    Args:
        mlp_out: the MLP's output per prompt.
        head_out: the feeding heads' outputs per prompt.
        heads: which heads those are.
        layer: the MLP's layer.
        ridge: ``lambda`` relative to the mean diagonal of ``G``.

    Returns:
        The :class:`MLPDecomposition`.
    """
    n, k = head_out.shape[0], head_out.shape[1]
    if n < 2:
        raise InterpError("the MLP decomposition needs at least 2 prompts")
    m = mlp_out.detach().double()
    h = head_out.detach().double()
    mbar, hbar = m.mean(0), h.mean(0)
    mc, hc = m - mbar, h - hbar
    G = torch.einsum("pid,pjd->ij", hc, hc)
    c = torch.einsum("pid,pd->i", hc, mc)
    lam = ridge * float(torch.diagonal(G).mean().clamp_min(1e-12))
    alpha = torch.linalg.solve(G + lam * torch.eye(k, dtype=G.dtype), c)
    beta = mbar - torch.einsum("i,id->d", alpha, hbar)
    resid = mc - torch.einsum("i,pid->pd", alpha, hc)
    tot = float(mc.pow(2).sum())
    r2 = 1.0 - float(resid.pow(2).sum()) / tot if tot > 0 else float("nan")
    share = n * float(beta.pow(2).sum()) / max(float(m.pow(2).sum()), 1e-30)
    return MLPDecomposition(layer, list(heads), alpha.float(), beta.float(), r2, share, n)


def feeding_heads(model: Model, layer: int, argument_heads: Sequence[Head]) -> list[Head]:
    """The heads whose outputs an MLP is regressed on: its own layer's heads and earlier argument heads."""
    own = [(layer, h) for h in range(model.n_heads)]
    earlier = [h for h in argument_heads if h[0] < layer]
    return earlier + own


def intercept_token_readout(
    model: Model, intercept: Float[torch.Tensor, "d_model"], scale: float, answer_ids: Sequence[int], top: int = 10
) -> tuple[list[str], float]:
    """Top tokens the intercept promotes and the mean percentile of the task's answers among all tokens.

    Returns:
        ``(top_tokens, answer_percentile)``; the percentile is 1.0 when every answer is the top token.
    """
    logits = component_logits(model, intercept[None], torch.tensor([scale]))[0]
    idx = logits.topk(top).indices.tolist()
    toks = [model.tokenizer.decode([i]) for i in idx]
    order = logits.argsort(descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    ans = torch.tensor(sorted(set(answer_ids)))
    pct = float(1.0 - rank[ans].float().mean() / (len(order) - 1))
    return toks, pct


def mlp_decomposition_tables(
    model: Model,
    acts: RecallActivations,
    argument_heads: Sequence[Head],
    layers: Optional[Sequence[int]] = None,
    rows: Optional[Sequence[int]] = None,
    top_tokens: int = 10,
    ridge: float = 1e-6,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, int], MLPDecomposition]]:
    """Fit the decomposition for every relation and MLP layer.

    Args:
        model: the model.
        acts: captured activations.
        argument_heads: the argument heads (they feed later MLPs).
        layers: MLP layers to decompose (default: every captured layer).
        rows: prompts to use (default: all).
        top_tokens: tokens listed from the intercept's readout.
        ridge: relative ridge of the least squares.

    Returns:
        ``(fits, coefficients, decompositions)``: ``fits`` has one row per (relation, layer) with
        ``r2``, ``intercept_share``, ``answer_percentile``, ``top_tokens``, the mean coefficient of
        argument heads and of the other heads; ``coefficients`` one row per head; the fitted objects.
    """
    rows = list(range(len(acts.prompts))) if rows is None else list(rows)
    sub = acts.subset(rows)
    layers = list(sub.layers) if layers is None else [L for L in layers if L in sub.layers]
    heads_out = head_outputs(model, sub)
    s_mean = float(final_norm_linear(model).scale(sub.final_resid).mean())
    arg = set(map(tuple, argument_heads))
    fits, coefs, objs = [], [], {}
    for rel in sub.prompts.relations:
        idx = torch.tensor(sub.prompts.rows(rel))
        if len(idx) < 2:
            continue
        answers = [sub.prompts.answer_ids[i] for i in idx.tolist()]
        for L in layers:
            fh = [h for h in feeding_heads(model, L, argument_heads) if h[0] in sub.layers]
            H = torch.stack([heads_out[idx, sub.layer_index(a), b] for a, b in fh], dim=1)
            dec = fit_mlp_decomposition(sub.mlp_out[idx, sub.layer_index(L)].float(), H, fh, L, ridge)
            objs[(rel, L)] = dec
            toks, pct = intercept_token_readout(model, dec.intercept, s_mean, answers, top_tokens)
            is_arg = np.array([h in arg for h in fh])
            al = dec.alpha.numpy()
            fits.append({"relation": rel, "shots": sub.prompts.shots, "layer": L, "n": dec.n, "r2": dec.r2,
                         "intercept_share": dec.intercept_share, "answer_percentile": pct,
                         "alpha_argument_mean": float(al[is_arg].mean()) if is_arg.any() else float("nan"),
                         "alpha_other_mean": float(al[~is_arg].mean()) if (~is_arg).any() else float("nan"),
                         "top_tokens": " | ".join(t.strip() or repr(t) for t in toks)})
            for (a, b), v, f in zip(fh, al, is_arg):
                coefs.append({"relation": rel, "layer": L, "head": f"{a}.{b}", "argument_head": bool(f), "alpha": float(v)})
    return pd.DataFrame(fits), pd.DataFrame(coefs), objs
