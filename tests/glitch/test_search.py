import numpy as np
import pytest

from interp import InterpError
from interp.glitch.search import aim_sweep, crossfit_scores, cutoff_for_aim, ranked_search


def _data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    # glitch tokens: a noisy linear rule of two features, 8% of the tokens
    z = 2.0 * X[:, 0] - 1.5 * X[:, 3] + rng.normal(scale=1.0, size=n)
    y = z > np.quantile(z, 0.92)
    return X, y


def test_ranked_search_verifies_above_a_cutoff_that_reaches_its_aim():
    X, y = _data()
    asked = []

    def label(pos):
        asked.append(np.asarray(pos))
        return y[pos]

    rs = ranked_search(X, label, sample_ratio=0.2, aim=0.85, seed=1)
    assert rs.trained and len(asked) == 2
    # the oracle is asked about the sample, then about the verified tokens only, once each
    assert set(asked[0]) == set(np.flatnonzero(rs.in_sample)) and set(asked[1]) == set(np.flatnonzero(rs.predicted))
    assert not (rs.predicted & rs.in_sample).any()
    # precision 1: every found token is glitch; the sample's glitch tokens are all found
    assert (y[rs.found]).all() and (rs.found[rs.in_sample] == y[rs.in_sample]).all()
    # the cut-off keeps the aimed share of the sample's glitch tokens (cross-fitted), and recall lands near it
    cf = rs.crossfit[rs.in_sample][y[rs.in_sample]]
    assert (cf >= rs.cutoff).mean() >= 0.85
    recall = rs.found.sum() / y.sum()
    assert 0.75 < recall < 0.97
    # ranking beats verifying at random: far fewer than 85% of the tokens were verified
    assert rs.predicted.mean() < 0.5
    assert np.isnan(rs.score[rs.in_sample]).all() and np.isfinite(rs.score[~rs.in_sample]).all()


def test_aim_sweep_is_monotone_and_matches_the_search():
    X, y = _data(seed=2)
    rs = ranked_search(X, lambda pos: y[pos], sample_ratio=0.2, aim=0.8, seed=0)
    rows = aim_sweep(rs, [0.6, 0.8, 0.95])
    preds = [p for _, _, p in rows]
    assert (preds[0] <= preds[1]).all() and (preds[1] <= preds[2]).all()
    assert (rows[1][2] == rs.predicted).all() and rows[1][1] == rs.cutoff


def test_too_few_glitch_tokens_in_the_sample_rank_nothing():
    X, y = _data()
    y = np.zeros(len(y), bool)
    y[[0, 500]] = True  # one glitch token in the sample
    calls = []
    rs = ranked_search(X, lambda pos: (calls.append(len(pos)), y[pos])[1], in_sample=np.arange(len(y)) < 100)
    assert not rs.trained and not rs.predicted.any() and len(calls) == 1
    assert (rs.found == (y & rs.in_sample)).all() and aim_sweep(rs, [0.5]) == []


def test_crossfit_and_cutoff_checks():
    X, y = _data(n=300)
    cf = crossfit_scores(X, y, folds=5)
    assert np.isfinite(cf).all()
    with pytest.raises(InterpError):
        crossfit_scores(X, np.arange(300) == 0)
    with pytest.raises(InterpError):
        cutoff_for_aim(cf, y, 0.0)
    assert cutoff_for_aim(cf, y, 1.0) == cf[y].min()
    with pytest.raises(InterpError):
        ranked_search(X, lambda pos: y[pos], sample_ratio=1.0)


def test_a_budget_stops_the_verification_best_first_within_the_estimated_exhaustive_time():
    X, y = _data(n=6000, seed=3)
    # glitch tokens cost three times as much to label (the cascade asks every prompt), with some noise
    rng = np.random.default_rng(0)
    c = np.where(y, 3.0, 1.0) * rng.uniform(0.9, 1.1, size=len(y))
    asked = []

    def label(pos):
        asked.append(np.asarray(pos))
        return y[pos]

    free = ranked_search(X, lambda pos: y[pos], sample_ratio=0.1, aim=0.95, seed=0)
    rs = ranked_search(X, label, sample_ratio=0.1, aim=0.95, seed=0, budget=0.2, cost=lambda pos: c[pos], batch=100)
    assert rs.stopped_by == "budget" and rs.budget == 0.2
    # the same draw and cut-off; the budget verifies a prefix of the aim's candidates, best score first
    assert (rs.in_sample == free.in_sample).all() and rs.cutoff == free.cutoff
    assert (rs.predicted <= free.predicted).all() and 0 < rs.predicted.sum() < free.predicted.sum()
    assert rs.score[rs.predicted].min() >= rs.score[free.predicted & ~rs.predicted].max()
    assert all(len(a) <= 100 for a in asked[1:]) and len(asked) > 2
    # the sample's lower estimate of the exhaustive cost, and the spend within the budget of the true cost
    assert rs.estimated_exhaustive < c.sum() < 1.1 * rs.estimated_exhaustive
    assert rs.oracle_cost == pytest.approx(c[rs.in_sample | rs.predicted].sum())
    # by default (a cost in seconds) the features' and the fit's wall time count against the budget
    assert rs.overhead == pytest.approx(sum(rs.seconds.values())) and rs.overhead > 0
    assert 0.17 * c.sum() < rs.oracle_cost + rs.overhead <= 0.2 * rs.estimated_exhaustive
    # precision 1 still, and the budget bought more recall than its share of random labelling would
    assert y[rs.found].all() and rs.found.sum() / y.sum() > 0.4


def test_a_budget_in_a_cost_that_does_not_depend_on_the_clock_stops_at_the_same_candidate_every_time():
    X, y = _data(n=6000, seed=3)
    # forwarded tokens per candidate: a glitch token is asked by every prompt of the cascade
    c = np.where(y, 19 + 19 + 31 + 31, 19).astype(float)
    runs = [ranked_search(X, lambda pos: y[pos], sample_ratio=0.1, aim=0.95, seed=0, budget=0.2, cost=lambda pos: c[pos],
                          overhead=0.0, feature_seconds=fs, batch=100) for fs in (0.0, 50.0)]
    a, b = runs
    # a slow feature pass is recorded but not charged: the same candidates are verified
    assert a.stopped_by == b.stopped_by == "budget" and a.overhead == b.overhead == 0.0
    assert (a.predicted == b.predicted).all() and a.oracle_cost == b.oracle_cost and b.seconds["features"] == 50.0
    assert a.oracle_cost <= 0.2 * a.estimated_exhaustive
    # the same feature time charged in seconds would have stopped it earlier
    charged = ranked_search(X, lambda pos: y[pos], sample_ratio=0.1, aim=0.95, seed=0, budget=0.2, cost=lambda pos: c[pos],
                            overhead=5000.0, batch=100)
    assert charged.predicted.sum() < a.predicted.sum() and (charged.predicted <= a.predicted).all()


def test_a_budget_that_the_aim_does_not_reach_changes_nothing_and_bad_budgets_are_refused():
    X, y = _data(seed=4)
    c = np.ones(len(y))
    free = ranked_search(X, lambda pos: y[pos], sample_ratio=0.2, aim=0.8, seed=0)
    rs = ranked_search(X, lambda pos: y[pos], sample_ratio=0.2, aim=0.8, seed=0, budget=1.0, cost=lambda pos: c[pos])
    assert rs.stopped_by == "aim" and (rs.predicted == free.predicted).all() and (rs.found == free.found).all()
    assert rs.oracle_cost == pytest.approx((rs.in_sample | rs.predicted).sum())
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(InterpError, match="budget"):
            ranked_search(X, lambda pos: y[pos], budget=bad, cost=lambda pos: c[pos])
    with pytest.raises(InterpError, match="cost"):
        ranked_search(X, lambda pos: y[pos], budget=0.5)
