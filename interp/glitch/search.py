"""Ranked search against the consensus label: token statistics rank, the oracle verifies, a cross-fitted cut-off or a cost budget stops.

GlitchProber spends a forward pass per candidate on activation features before any oracle call (on
SmolLM2 0.15x of the consensus oracle's cost over the vocabulary), and those features rank the
consensus label's glitch tokens no better than the token's text and tokenization do (AUC 0.79-0.83,
see the README). This search spends nothing before the oracle:

1. label a random ``sample_ratio`` share of the candidates with the consensus oracle (the
   all-prompts cascade, :mod:`interp.glitch.consensus`);
2. rank every other candidate by a logistic regression (standardised
   :func:`~interp.glitch.baselines.token_statistics`, balanced class weights) fitted on the sample;
3. choose how far down the ranking to verify from the sample alone: each sampled glitch token is
   scored by a model fitted on the other ``folds`` folds of the sample (cross-fitting), and the
   cut-off is the ``1 - aim`` quantile of those scores, so a share ``aim`` of the glitch tokens is
   expected at or above it;
4. verify the other candidates at or above the cut-off with the consensus oracle, best score first,
   and, where a ``budget`` is given, stop before the cost spent would pass ``budget`` times the
   exhaustive oracle's cost over every candidate (each batch sized to fit if every candidate in it
   cost as much as the costliest so far).

Cost is in whatever unit ``cost`` returns. The pipeline prices a call at the tokens it forwards
(:func:`~interp.glitch.oracle.call_tokens`), which are the same on every machine and in every run,
so the budget stops at the same candidate each time; priced at measured seconds it would move with
the machine's load. The token statistics forward no tokens (``overhead=0``); priced in seconds, the
features' and the fit's wall time count against the budget (the default ``overhead``).

The exhaustive cost is not known before the search (knowing it means labelling everything); the
random sample estimates it: ``n * (mean - 2 * se)`` of the sample's cost per candidate, a lower
bound at about 97.5%, so the whole search stays within the budget on about 97.5% of draws. The cross-fitted cut-off's recall varies from draw to draw
(it rests on the sample's hundred-odd glitch tokens: sd 0.03 in recall and 0.04 in time over 20
draws on SmolLM2); the recall bought with a fixed time varies much less (sd 0.010), because the
ranking is about as good in every draw. With both, whichever comes first stops.

Precision is 1: every token reported went through the oracle. Recall is what the stop leaves; the
``aim`` sweep (:func:`aim_sweep`) shows the recall and cost of other cut-offs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from interp.errors import InterpError


@dataclass
class RankedSearch:
    """What :func:`ranked_search` did.

    Attributes:
        in_sample: per candidate, whether it was in the labelled random sample.
        sample_glitch: per candidate, glitch under the label (False outside the sample).
        score: the ranking model's decision value per candidate (NaN in the sample).
        crossfit: per candidate in the sample, its score from the folds it was left out of (NaN elsewhere).
        cutoff: the decision value at and above which candidates are verified.
        aim: the share of glitch tokens the cut-off aims at.
        predicted: candidates outside the sample at or above the cut-off (verified).
        found: candidates the label calls glitch among the sample and the verified ones.
        seconds: ``features``, ``training``, ``prediction`` (oracle time is priced by the caller).
        trained: False when the sample holds fewer than 2 glitch or 2 normal tokens: nothing is
            ranked or verified, and only the sample's glitch tokens are found.
        budget: the share of the exhaustive oracle cost the search may spend (None: no budget).
        estimated_exhaustive: the sample's lower estimate of the exhaustive oracle cost over every
            candidate, in ``cost``'s unit (NaN without ``cost``).
        oracle_cost: oracle cost spent, sample and verification (NaN without ``cost``).
        overhead: the cost counted against the budget before the oracle (features and fit).
        stopped_by: ``aim`` (every candidate at or above the cut-off verified), ``budget`` (the budget
            ran out first) or ``untrained``.
    """

    in_sample: np.ndarray
    sample_glitch: np.ndarray
    score: np.ndarray
    crossfit: np.ndarray
    cutoff: float
    aim: float
    predicted: np.ndarray
    found: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    trained: bool = True
    budget: Optional[float] = None
    estimated_exhaustive: float = float("nan")
    oracle_cost: float = float("nan")
    overhead: float = 0.0
    stopped_by: str = "aim"


def ranking_model(C: float = 0.03, seed: int = 0) -> Pipeline:
    """The ranking model: standardised features -> logistic regression with balanced class weights."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=5000, random_state=seed))


def crossfit_scores(X: np.ndarray, y: np.ndarray, folds: int = 5, C: float = 0.03, seed: int = 0) -> np.ndarray:
    """Each row's decision value from a model fitted on the other ``folds - 1`` folds (stratified)."""
    y = np.asarray(y, dtype=bool)
    k = int(min(folds, y.sum(), (~y).sum()))
    if k < 2:
        raise InterpError(f"cross-fitting needs at least 2 glitch and 2 normal tokens in the sample, got {int(y.sum())} and {int((~y).sum())}")
    out = np.full(len(y), np.nan)
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(X, y):
        out[te] = ranking_model(C, seed).fit(X[tr], y[tr]).decision_function(X[te])
    return out


def cutoff_for_aim(crossfit: np.ndarray, y: np.ndarray, aim: float) -> float:
    """The decision value above which a share ``aim`` of the sample's glitch tokens score (cross-fitted)."""
    if not 0 < aim <= 1:
        raise InterpError(f"aim must be in (0, 1], not {aim}")
    pos = np.asarray(crossfit, dtype=float)[np.asarray(y, dtype=bool)]
    return float(np.quantile(pos, 1 - aim, method="lower"))


def estimate_exhaustive_cost(sample_cost: np.ndarray, n: int, z: float = 2.0) -> float:
    """A lower estimate of the oracle's cost over ``n`` candidates from a random sample's cost per
    candidate: ``n * (mean - z * se)`` (``se`` the standard error of the mean; 0 from one candidate)."""
    c = np.asarray(sample_cost, dtype=float)
    if not len(c) or not np.isfinite(c).all():
        raise InterpError("the sample's oracle cost must be finite, one per sampled candidate")
    se = float(c.std(ddof=1) / np.sqrt(len(c))) if len(c) > 1 else 0.0
    return float(n * max(0.0, c.mean() - z * se))


def ranked_search(
    X: np.ndarray,
    label: Callable[[np.ndarray], np.ndarray],
    *,
    sample_ratio: float = 0.05,
    aim: float = 0.85,
    folds: int = 5,
    C: float = 0.03,
    seed: int = 0,
    in_sample: Optional[Sequence[bool]] = None,
    feature_seconds: float = 0.0,
    budget: Optional[float] = None,
    cost: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    overhead: Optional[float] = None,
    batch: int = 256,
) -> RankedSearch:
    """Steps 1-4 of the module docstring over the candidates whose features are the rows of ``X``.

    Args:
        X: ``[n_candidates, n_features]`` features (:func:`~interp.glitch.baselines.token_statistics`).
        label: ``label(positions) -> bool array`` (glitch), the oracle, asked once for the sample
            and once for the tokens to verify.
        sample_ratio: share of candidates labelled at random (ignored when ``in_sample`` is given).
        aim: share of glitch tokens the cut-off aims at.
        folds: cross-fitting folds.
        C: the logistic regression's inverse regularisation.
        seed: random state of the sample and the folds.
        in_sample: a given sample mask instead of a random one.
        feature_seconds: time spent computing ``X`` (recorded under ``features``).
        budget: the share of the exhaustive oracle cost over every candidate the search may spend
            (None: the cut-off alone stops). Needs ``cost``.
        cost: ``cost(positions) -> cost`` per position, what each of those positions' labels cost
            (asked right after ``label`` on the same positions): seconds, forwarded tokens, calls.
        overhead: the cost spent before the oracle, in ``cost``'s unit, counted against the budget
            (None: ``feature_seconds`` plus the fit's seconds, for a cost in seconds).
        batch: candidates verified per ``label`` call under a budget.

    Returns:
        A :class:`RankedSearch`.
    """
    X = np.asarray(X, dtype=float)
    n = len(X)
    if budget is not None and not 0 < budget <= 1:
        raise InterpError(f"budget must be in (0, 1], not {budget}")
    if budget is not None and cost is None:
        raise InterpError("a budget needs the oracle's cost per position (cost=)")
    if batch < 1:
        raise InterpError(f"batch must be at least 1, not {batch}")
    if in_sample is None:
        if not 0 < sample_ratio < 1:
            raise InterpError(f"sample_ratio must be in (0, 1), not {sample_ratio}")
        rng = np.random.default_rng(seed)
        samp = np.zeros(n, dtype=bool)
        samp[rng.choice(n, size=max(1, int(round(sample_ratio * n))), replace=False)] = True
    else:
        samp = np.asarray(in_sample, dtype=bool)
        if len(samp) != n:
            raise InterpError("in_sample must have one entry per candidate")
    pos = np.flatnonzero(samp)
    y = np.asarray(label(pos), dtype=bool)
    sample_cost = np.asarray(cost(pos), dtype=float) if cost is not None else None
    exhaustive = estimate_exhaustive_cost(sample_cost, n) if sample_cost is not None else float("nan")
    oracle_cost = float(sample_cost.sum()) if sample_cost is not None else float("nan")
    secs = {"features": float(feature_seconds), "training": 0.0, "prediction": 0.0}
    sample_glitch = np.zeros(n, dtype=bool)
    sample_glitch[pos] = y
    if min(int(y.sum()), int((~y).sum())) < 2:
        nothing = np.zeros(n, dtype=bool)
        return RankedSearch(samp, sample_glitch, np.full(n, np.nan), np.full(n, np.nan), float("nan"), float(aim), nothing,
                            sample_glitch.copy(), secs, trained=False, budget=budget, estimated_exhaustive=exhaustive,
                            oracle_cost=oracle_cost, overhead=float(sum(secs.values())) if overhead is None else float(overhead),
                            stopped_by="untrained")
    t0 = time.perf_counter()
    cf = crossfit_scores(X[pos], y, folds, C, seed)
    cut = cutoff_for_aim(cf, y, aim)
    model = ranking_model(C, seed).fit(X[pos], y)
    secs["training"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    score = np.full(n, np.nan)
    rest = np.flatnonzero(~samp)
    if len(rest):
        score[rest] = model.decision_function(X[rest])
    secs["prediction"] = time.perf_counter() - t0
    above = ~samp & (np.nan_to_num(score, nan=-np.inf) >= cut)
    found = np.zeros(n, dtype=bool)
    found[pos] = y
    order = np.flatnonzero(above)
    order = order[np.argsort(-score[order], kind="stable")]  # best score first
    predicted = np.zeros(n, dtype=bool)
    stopped = "aim"
    spent_before = float(sum(secs.values())) if overhead is None else float(overhead)
    if budget is None:
        if len(order):
            found[order] = np.asarray(label(order), dtype=bool)
            predicted[order] = True
            if cost is not None:
                oracle_cost += float(np.sum(cost(order)))
    else:
        allowed = budget * exhaustive - spent_before
        # a batch is sized so that it fits even if each of its candidates costs the most any candidate has
        # cost so far (the best-ranked ones are the likeliest glitch tokens, which take every prompt)
        worst = float(sample_cost.max()) if len(sample_cost) else 0.0
        i = 0
        while i < len(order):
            k = min(batch, len(order) - i) if worst <= 0 else min(batch, len(order) - i, int((allowed - oracle_cost) // worst))
            if k < 1:
                stopped = "budget"
                break
            chunk = order[i:i + k]
            found[chunk] = np.asarray(label(chunk), dtype=bool)
            spent = np.asarray(cost(chunk), dtype=float)
            oracle_cost += float(spent.sum())
            predicted[chunk] = True
            worst = max(worst, float(spent.max()))
            i += k
    crossfit = np.full(n, np.nan)
    crossfit[pos] = cf
    return RankedSearch(samp, sample_glitch, score, crossfit, cut, float(aim), predicted, found, secs, budget=budget,
                        estimated_exhaustive=exhaustive, oracle_cost=oracle_cost, overhead=spent_before, stopped_by=stopped)


def aim_sweep(search: RankedSearch, aims: Sequence[float]) -> list[tuple[float, float, np.ndarray]]:
    """``(aim, cut-off, predicted mask)`` for other aims, from the same sample and ranking (none untrained)."""
    if not search.trained:
        return []
    y = search.sample_glitch[search.in_sample]
    cf = search.crossfit[search.in_sample]
    out = []
    for a in aims:
        cut = cutoff_for_aim(cf, y, a)
        out.append((float(a), cut, ~search.in_sample & (np.nan_to_num(search.score, nan=-np.inf) >= cut)))
    return out
