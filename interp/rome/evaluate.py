"""Edit evaluation (CounterFact metrics): efficacy, generalisation, locality.

* efficacy: on the edit prompt the new object's first token is more likely than the true one's;
* generalisation: the same on the paraphrase prompts;
* locality: on neighbourhood prompts (other subjects) the top next token is unchanged by the edit,
  and (CounterFact's neighbourhood score) their own true object stays more likely than the new one.

With ``prefixes`` (the consistent-prefix variant) every prompt is preceded by a prefix drawn from
the set with a seeded generator, before and after the edit alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from jaxtyping import Float

import interp
from interp.model import Model
from interp.rome.requests import EditRequest


@dataclass
class EvalPrompts:
    """The prompts of one request, with prefixes (if any) already put before them."""

    texts: list[str]
    kinds: list[str]
    true_ids: list[int]
    new_ids: list[int]


def eval_prompts(model: Model, request: EditRequest, prefixes: Optional[Sequence[str]] = None, seed: int = 0) -> EvalPrompts:
    """The edit, paraphrase and neighbourhood prompts of a request (prefixed when asked)."""
    rng = random.Random(seed * 100003 + request.case_id)
    pre = (lambda: rng.choice(list(prefixes))) if prefixes else (lambda: "")
    new = model.first_token(request.target_new)
    texts, kinds, true_ids = [pre() + request.text], ["edit"], [model.first_token(request.target_true)]
    for p in request.paraphrase_prompts:
        texts.append(pre() + p)
        kinds.append("paraphrase")
        true_ids.append(true_ids[0])
    for p, t in request.neighborhood_prompts:
        texts.append(pre() + p)
        kinds.append("neighborhood")
        true_ids.append(model.first_token(t))
    return EvalPrompts(texts, kinds, true_ids, [new] * len(texts))


def next_token_logprobs(model: Model, texts: Sequence[str], batch_size: int = 32) -> Float[torch.Tensor, "n d_vocab"]:
    """Log-probabilities of the next token after each text."""
    cap = interp.capture(model, list(texts), logits=True, batch_size=batch_size, progress=False)
    return cap.logits.float().log_softmax(-1)


def edit_scores(prompts: EvalPrompts, before: Float[torch.Tensor, "n d_vocab"], after: Float[torch.Tensor, "n d_vocab"]) -> dict:
    """CounterFact scores of one edit from next-token log-probs before and after it.

    Returns:
        ``efficacy`` (0/1), ``generalization`` and ``locality`` / ``neighborhood_score``
        (fractions; NaN without such prompts), the edit prompt's new-object probability after the
        edit, and its log-probability margin new - true.
    """
    idx = torch.arange(len(prompts.texts))
    t, n = torch.tensor(prompts.true_ids), torch.tensor(prompts.new_ids)
    prefers_new = (after[idx, n] > after[idx, t]).float()
    kinds = prompts.kinds

    def mean(mask: list[bool], x: torch.Tensor) -> float:
        sel = torch.tensor(mask)
        return float(x[sel].mean()) if sel.any() else float("nan")

    para = [k == "paraphrase" for k in kinds]
    neigh = [k == "neighborhood" for k in kinds]
    unchanged = (after.argmax(-1) == before.argmax(-1)).float()
    return {
        "efficacy": float(prefers_new[0]),
        "generalization": mean(para, prefers_new),
        "locality": mean(neigh, unchanged),
        "neighborhood_score": mean(neigh, 1 - prefers_new),
        "p_new_after": float(after[0, n[0]].exp()),
        "p_new_before": float(before[0, n[0]].exp()),
        "margin_after": float(after[0, n[0]] - after[0, t[0]]),
    }
