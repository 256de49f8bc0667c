r"""MLP decomposition: an *activation* part and a *function application* part, with an identifiable intercept.

For one task (relation) ``r`` and one MLP layer ``l``, with ``m_p`` the MLP's output at the last
position of prompt ``p`` and ``h_{p,i}`` the outputs of the heads that feed it (every head of
layer ``l`` plus the argument heads of earlier layers), fit across the task's ``n`` prompts

.. math::

    m_p = \sum_i \alpha_i \, (h_{p,i} - \bar h_i) + \beta + \varepsilon_p,
    \qquad \bar h_i = \tfrac1n \sum_p h_{p,i},

with one scalar :math:`\alpha_i` per head and one vector :math:`\beta \in R^{d_{model}}` shared by
the task's prompts. The coefficients are the **activation** part (:math:`\alpha_i > 0` amplifies
head ``i``'s output, :math:`\alpha_i \approx -1` erases it); :math:`\beta` is the **function
application** part, the task-specific direction added whatever the argument is (an implicit
``get_capital(X)``); read through the unembedding it should promote the task's answers.

Why the head outputs are centred. In the uncentred form :math:`m_p = \sum_i \alpha_i h_{p,i} + \beta`
a head whose output barely changes across the task's prompts (:math:`h_{p,i} \approx \bar h_i`, as
for heads that attend to the first position) is collinear with the intercept: :math:`\alpha_i`
is then fixed only by the prompts' small deviations and :math:`\beta = \bar m - \sum_i \alpha_i
\bar h_i` swings with it, so the intercept is not identified (its norm can exceed the MLP output's).
Centring makes the regressors orthogonal to the constant, so least squares gives, for any
:math:`\alpha`,

.. math::

    \hat\beta = \bar m, \qquad
    G_{ij} = \sum_p \langle \tilde h_{p,i}, \tilde h_{p,j} \rangle, \quad
    c_i = \sum_p \langle \tilde h_{p,i}, \tilde m_p \rangle, \quad
    \hat\alpha = (G + \lambda I)^{-1} c,

with :math:`\tilde x = x - \bar x` and a small ridge :math:`\lambda` (relative to the mean diagonal
of ``G``) that only steadies :math:`\alpha` and never touches :math:`\beta`. Every part of a head's
output that is constant over the task is thereby assigned to :math:`\beta`, which is what the paper
calls function application (argument-independent); :math:`\alpha` explains how the MLP output
*varies* with the heads. Per prompt fits (``n = 1``) cannot separate the two, and a ridge on the
uncentred form trades the same ambiguity for an arbitrary penalty, hence this choice.

Fit quality is :math:`R^2 = 1 - \sum_p \lVert \tilde m_p - \sum_i \alpha_i \tilde h_{p,i} \rVert^2
/ \sum_p \lVert \tilde m_p \rVert^2` in sample, and the same on held-out prompts (``r2_cv``,
``k``-fold, centring and fit on the training folds). The intercept's stability across folds is the
mean pairwise cosine and spread (distance over norm) of the fold intercepts (centred form, and for
comparison the uncentred :math:`\bar m - \sum_i \alpha_i \bar h_i`) and the overlap of their top
tokens. Its task
specificity is an AUC: the probability that the intercept's logit for an answer of its own task
exceeds its logit for an answer of another task (answers shared by both are left out).
"""

from __future__ import annotations

import itertools
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

RIDGE = 1e-3  # lambda relative to the mean diagonal of G


@dataclass
class MLPDecomposition:
    """The fit for one relation and layer: coefficients, intercept and quality.

    Attributes:
        uncentred_intercept: ``mean(m) - sum_i alpha_i mean(h_i)``, the intercept of the uncentred
            form with the same coefficients (reported for comparison only).
        intercept_share: ``n |beta|^2 / sum_p |m_p|^2`` (at most 1 for the centred form).
    """

    layer: int
    heads: list[Head]
    alpha: Float[torch.Tensor, "k"]
    intercept: Float[torch.Tensor, "d_model"]
    uncentred_intercept: Float[torch.Tensor, "d_model"]
    r2: float
    intercept_share: float
    n: int


def fit_mlp_decomposition(
    mlp_out: Float[torch.Tensor, "n d_model"],
    head_out: Float[torch.Tensor, "n k d_model"],
    heads: Sequence[Head],
    layer: int,
    ridge: float = RIDGE,
) -> MLPDecomposition:
    """Least-squares fit of ``m_p = sum_i alpha_i (h_{p,i} - mean_i) + beta`` (module docstring).

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
    resid = mc - torch.einsum("i,pid->pd", alpha, hc)
    tot = float(mc.pow(2).sum())
    r2 = 1.0 - float(resid.pow(2).sum()) / tot if tot > 0 else float("nan")
    share = n * float(mbar.pow(2).sum()) / max(float(m.pow(2).sum()), 1e-30)
    uncentred = mbar - torch.einsum("i,id->d", alpha, hbar)
    return MLPDecomposition(layer, list(heads), alpha.float(), mbar.float(), uncentred.float(), r2, share, n)


def predict_mlp(dec: MLPDecomposition, head_out: Float[torch.Tensor, "n k d_model"], head_mean: Float[torch.Tensor, "k d_model"]
                ) -> Float[torch.Tensor, "n d_model"]:
    """``beta + sum_i alpha_i (h_{p,i} - head_mean_i)`` for new prompts."""
    return dec.intercept.double() + torch.einsum("i,pid->pd", dec.alpha.double(), head_out.double() - head_mean.double())


def folds(n: int, k: int = 5) -> list[torch.Tensor]:
    """``k`` interleaved held-out folds of ``range(n)`` (deterministic; fewer when ``n < k``)."""
    k = min(k, n)
    return [torch.arange(i, n, k) for i in range(k)]


@dataclass
class FoldCheck:
    """Cross-validated fit quality and the intercept's stability across folds."""

    r2_cv: float
    intercept_cosine: float
    uncentred_intercept_cosine: float
    intercept_spread: float
    uncentred_intercept_spread: float
    intercepts: list[Float[torch.Tensor, "d_model"]]


def cross_validate(
    mlp_out: Float[torch.Tensor, "n d_model"], head_out: Float[torch.Tensor, "n k d_model"], heads: Sequence[Head], layer: int,
    k: int = 5, ridge: float = RIDGE,
) -> FoldCheck:
    """Fit on all folds but one, predict the held-out prompts; compare the fold intercepts.

    Returns:
        ``r2_cv`` (held-out variance explained, around the overall mean); for the fold intercepts
        of the centred form and of the uncentred form, the mean pairwise cosine and the spread (mean
        pairwise distance over mean norm); the centred intercepts. NaN where there are fewer than 4
        prompts.
    """
    n = len(mlp_out)
    if n < 4:
        return FoldCheck(*([float("nan")] * 5), [])
    m = mlp_out.double()
    sse, betas, unc = 0.0, [], []
    for test in folds(n, k):
        train = torch.tensor([i for i in range(n) if i not in set(test.tolist())])
        dec = fit_mlp_decomposition(m[train], head_out[train], heads, layer, ridge)
        pred = predict_mlp(dec, head_out[test], head_out[train].double().mean(0))
        sse += float((m[test] - pred).pow(2).sum())
        betas.append(dec.intercept)
        unc.append(dec.uncentred_intercept)
    tot = float((m - m.mean(0)).pow(2).sum())

    def mean_cos(vs: list[torch.Tensor]) -> float:
        return float(np.mean([float(torch.cosine_similarity(a.double(), b.double(), dim=0)) for a, b in itertools.combinations(vs, 2)]))

    def spread(vs: list[torch.Tensor]) -> float:
        dist = np.mean([float((a.double() - b.double()).norm()) for a, b in itertools.combinations(vs, 2)])
        return float(dist / max(np.mean([float(v.double().norm()) for v in vs]), 1e-30))

    return FoldCheck(1.0 - sse / tot if tot > 0 else float("nan"), mean_cos(betas), mean_cos(unc), spread(betas), spread(unc), betas)


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


def task_specificity_auc(logits: Float[torch.Tensor, "d_vocab"], own: Sequence[int], others: Sequence[int]) -> float:
    """P(logit of an own-task answer > logit of another task's answer), ties counted half.

    Tokens in both sets are dropped from ``others``. NaN when either set is empty.
    """
    pos = sorted(set(own))
    neg = sorted(set(others) - set(pos))
    if not pos or not neg:
        return float("nan")
    a = logits[torch.tensor(pos)].double()[:, None]
    b = logits[torch.tensor(neg)].double()[None, :]
    return float(((a > b).double() + 0.5 * (a == b).double()).mean())


def _top_overlap(model: Model, vs: list[torch.Tensor], s: float, top: int) -> float:
    if len(vs) < 2:
        return float("nan")
    lg = component_logits(model, torch.stack(vs), torch.full((len(vs),), s))
    sets = [set(r.topk(top).indices.tolist()) for r in lg]
    return float(np.mean([len(a & b) / top for a, b in itertools.combinations(sets, 2)]))


def mlp_decomposition_tables(
    model: Model,
    acts: RecallActivations,
    argument_heads: Sequence[Head],
    layers: Optional[Sequence[int]] = None,
    rows: Optional[Sequence[int]] = None,
    top_tokens: int = 10,
    ridge: float = RIDGE,
    n_folds: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, int], MLPDecomposition]]:
    """Fit the decomposition for every relation and MLP layer, with its fold checks and task AUC.

    Args:
        model: the model.
        acts: captured activations.
        argument_heads: the argument heads (they feed later MLPs).
        layers: MLP layers to decompose (default: every captured layer).
        rows: prompts to use (default: all).
        top_tokens: tokens listed from the intercept's readout.
        ridge: relative ridge on the coefficients.
        n_folds: folds of the cross-validation.

    Returns:
        ``(fits, coefficients, decompositions)``: ``fits`` has one row per (relation, layer) with
        ``r2``, ``r2_cv``, ``intercept_share``, ``intercept_fold_cosine``,
        ``uncentred_intercept_fold_cosine``, ``intercept_fold_top_overlap``, ``answer_percentile``,
        ``task_auc``, ``top_tokens``, the mean coefficient of argument heads and of the other
        heads; ``coefficients`` one row per head; the fitted objects.
    """
    rows = list(range(len(acts.prompts))) if rows is None else list(rows)
    sub = acts.subset(rows)
    layers = list(sub.layers) if layers is None else [L for L in layers if L in sub.layers]
    heads_out = head_outputs(model, sub)
    s_mean = float(final_norm_linear(model).scale(sub.final_resid).mean())
    arg = set(map(tuple, argument_heads))
    rel_answers = {rel: [sub.prompts.answer_ids[i] for i in sub.prompts.rows(rel)] for rel in sub.prompts.relations}
    fits, coefs, objs = [], [], {}
    for rel in sub.prompts.relations:
        idx = torch.tensor(sub.prompts.rows(rel))
        if len(idx) < 2:
            continue
        answers = rel_answers[rel]
        others = [t for r2, a in rel_answers.items() if r2 != rel for t in a]
        for L in layers:
            fh = [h for h in feeding_heads(model, L, argument_heads) if h[0] in sub.layers]
            H = torch.stack([heads_out[idx, sub.layer_index(a), b] for a, b in fh], dim=1)
            M = sub.mlp_out[idx, sub.layer_index(L)].float()
            dec = fit_mlp_decomposition(M, H, fh, L, ridge)
            cv = cross_validate(M, H, fh, L, n_folds, ridge)
            objs[(rel, L)] = dec
            toks, pct = intercept_token_readout(model, dec.intercept, s_mean, answers, top_tokens)
            logits = component_logits(model, dec.intercept[None], torch.tensor([s_mean]))[0]
            is_arg = np.array([h in arg for h in fh])
            al = dec.alpha.numpy()
            fits.append({"relation": rel, "shots": sub.prompts.shots, "layer": L, "n": dec.n, "r2": dec.r2, "r2_cv": cv.r2_cv,
                         "intercept_share": dec.intercept_share,
                         "uncentred_intercept_share": dec.n * float(dec.uncentred_intercept.double().pow(2).sum())
                         / max(float(M.double().pow(2).sum()), 1e-30),
                         "intercept_fold_cosine": cv.intercept_cosine,
                         "uncentred_intercept_fold_cosine": cv.uncentred_intercept_cosine,
                         "intercept_fold_spread": cv.intercept_spread,
                         "uncentred_intercept_fold_spread": cv.uncentred_intercept_spread,
                         "intercept_fold_top_overlap": _top_overlap(model, cv.intercepts, s_mean, top_tokens),
                         "answer_percentile": pct, "task_auc": task_specificity_auc(logits, answers, others),
                         "alpha_argument_mean": float(al[is_arg].mean()) if is_arg.any() else float("nan"),
                         "alpha_other_mean": float(al[~is_arg].mean()) if (~is_arg).any() else float("nan"),
                         "top_tokens": " | ".join(t.strip() or repr(t) for t in toks)})
            for (a, b), v, f in zip(fh, al, is_arg):
                coefs.append({"relation": rel, "layer": L, "head": f"{a}.{b}", "argument_head": bool(f), "alpha": float(v)})
    return pd.DataFrame(fits), pd.DataFrame(coefs), objs


def mlp_layer_summary(model: Model, fits: pd.DataFrame, decs: dict[tuple[str, int], MLPDecomposition], scale: float,
                      top_tokens: int = 10) -> pd.DataFrame:
    """Per MLP layer: fit quality, argument vs other coefficients, fold stability, task AUC (means
    over relations) and the top tokens of the relations' mean intercept."""
    out = []
    for L, g in fits.groupby("layer", sort=True):
        b = torch.stack([d.intercept for (r, l2), d in decs.items() if l2 == L]).mean(0)
        idx = component_logits(model, b[None], torch.tensor([scale]))[0].topk(top_tokens).indices.tolist()
        out.append({"layer": int(L), "relations": len(g), "r2": float(g["r2"].mean()), "r2_cv": float(g["r2_cv"].mean()),
                    "alpha_argument_mean": float(g["alpha_argument_mean"].mean()),
                    "alpha_other_mean": float(g["alpha_other_mean"].mean()),
                    "intercept_fold_cosine": float(g["intercept_fold_cosine"].mean()),
                    "uncentred_intercept_fold_cosine": float(g["uncentred_intercept_fold_cosine"].mean()),
                    "intercept_fold_spread": float(g["intercept_fold_spread"].mean()),
                    "uncentred_intercept_fold_spread": float(g["uncentred_intercept_fold_spread"].mean()),
                    "intercept_share": float(g["intercept_share"].mean()),
                    "uncentred_intercept_share": float(g["uncentred_intercept_share"].mean()),
                    "answer_percentile": float(g["answer_percentile"].mean()), "task_auc": float(g["task_auc"].mean()),
                    "task_auc_min": float(g["task_auc"].min()),
                    "top_tokens": " | ".join(model.tokenizer.decode([i]).strip() or repr(model.tokenizer.decode([i])) for i in idx)})
    return pd.DataFrame(out)
