"""Baselines measured on the same ground truth: exhaustive search, uniform random sampling, Magikarp.

Each returns the glitch tokens it finds and what it cost in oracle calls and seconds, so methods
compare on recall at their cost (precision is 1 for all of them: every reported token went through
the oracle).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from interp.errors import InterpError
from interp.glitch.magikarp import magikarp_candidates, magikarp_indicator, unused_reference_tokens
from interp.glitch.oracle import RepeatTemplate
from interp.model import Model


def random_sampling(
    truth: pd.DataFrame, n_calls: int, seed: int = 0
) -> list[int]:
    """Glitch tokens found by checking ``n_calls`` candidate tokens drawn uniformly (from stored labels).

    Args:
        truth: ground truth with ``token_id`` and ``cls`` (only ``glitch``/``normal`` rows are drawn).
        n_calls: oracle calls the budget allows.
        seed: random state.
    """
    cand = truth[truth.cls.isin(["glitch", "normal"])]
    n = int(min(max(n_calls, 0), len(cand)))
    pick = cand.sample(n=n, random_state=seed) if n else cand.iloc[:0]
    return pick.loc[pick.cls == "glitch", "token_id"].astype(int).tolist()


def magikarp_search(
    model: Model,
    candidates: Sequence[int],
    label: Callable[[list[int]], list[str]],
    *,
    share: float = 0.02,
    template: Optional[RepeatTemplate] = None,
) -> tuple[list[int], pd.DataFrame]:
    """Magikarp baseline: score every token, verify the lowest ``share`` of the candidates with the oracle.

    Args:
        model: the model handle.
        candidates: tokens the oracle can judge.
        label: ``label(token_ids) -> classes`` (the oracle, or a lookup into stored labels).
        share: share of the candidates to verify.
        template: the oracle prompt (its tokens are not used as unused references).

    Returns:
        ``(found glitch ids, table of token_id, indicator, verified, cls)``.
    """
    ref = unused_reference_tokens(model, template)
    if not ref:
        raise InterpError(f"{model.spec} has no special tokens to use as known-unused references")
    scores = magikarp_indicator(model, ref)
    picked = magikarp_candidates(scores, share, candidates)
    cls = label(picked)
    table = pd.DataFrame({"token_id": np.asarray(candidates, dtype=int)})
    table["indicator"] = scores[table.token_id]
    verified = dict(zip(picked, cls))
    table["verified"] = table.token_id.isin(verified)
    table["cls"] = table.token_id.map(verified).fillna("")
    found = [t for t, c in verified.items() if c == "glitch"]
    return found, table
