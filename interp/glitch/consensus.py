"""Robust ground truth: the repeat oracle asked with several prompts, every verdict kept, consensus labels.

A single oracle prompt mixes two things into its verdict: whether the model can repeat the token,
and whether this prompt's wording and worked examples happen to trip it on that token. Asking with
several prompts separates them. The prompts (:data:`ORACLE_PROMPTS`, a registry in data):

- ``few_shot``: the project's default prompt (three worked examples, reply opened by a quote); the
  stored ground truth was made with it, so it is the *single-prompt label*;
- ``other_examples``: the same request and reply form with other worked examples;
- ``paper_few_shot``: GlitchProber's own wording ("Can you repeat the string '...' and return back to
  me?" / "Here is the repeated string: ...") with a third set of worked examples;
- ``paper``: the paper's wording zero-shot. It joins the consensus only where the model follows it:
  :func:`prompt_follow_rate` asks for common single-token words and the prompt is kept when at least
  ``min_follow`` of them come back (SmolLM2-Instruct answers it with small talk).

Consensus labels (:func:`consensus_labels`): ``all``, glitch when every prompt says glitch; and
``majority``, glitch when more than half do. The ``all`` label can be asked as a cascade
(:func:`consensus_oracle`): a token goes to the next prompt only while every earlier prompt called it
glitch, because one ``normal`` settles it. The cascade is *the* consensus oracle whose cost the
pipeline is compared with (it is also how an exhaustive consensus scan would be run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from interp.errors import InterpError
from interp.glitch.oracle import REPEAT_PROMPT, REPEAT_REPLY, REPEAT_SHOTS, RepeatTemplate, repeat_oracle, repeat_template
from interp.model import Model

PAPER_PROMPT = "Can you repeat the string '{token}' and return back to me?"
PAPER_REPLY = "Here is the repeated string: '{token}'"

#: name -> (request, reply form, worked examples). The first is the single-prompt label.
ORACLE_PROMPTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "few_shot": (REPEAT_PROMPT, REPEAT_REPLY, REPEAT_SHOTS),
    "other_examples": (REPEAT_PROMPT, REPEAT_REPLY, ("apple", " house", "tion")),
    "paper_few_shot": (PAPER_PROMPT, PAPER_REPLY, ("cat", " blue", "ment")),
    "paper": (PAPER_PROMPT, PAPER_REPLY, ()),
}
SINGLE_PROMPT = "few_shot"

#: common words asked to check that a prompt is followed at all (single tokens only are used)
FOLLOW_WORDS = ("house", " water", " green", " table", " music", " river", " paper", " small", " night", " happy",
                " garden", " window", " city", " dog", " apple", " summer", " light", " road", " book", " friend")


def oracle_templates(model: Model, names: Optional[Sequence[str]] = None) -> dict[str, RepeatTemplate]:
    """The oracle prompts of :data:`ORACLE_PROMPTS` (chat-wrapped only for chat models, ``model.chat``).

    Args:
        model: the model handle.
        names: which prompts (default: all, in registry order).

    Returns:
        name -> :class:`~interp.glitch.oracle.RepeatTemplate`.
    """
    names = list(ORACLE_PROMPTS) if names is None else list(names)
    unknown = [n for n in names if n not in ORACLE_PROMPTS]
    if unknown:
        raise InterpError(f"unknown oracle prompt(s) {unknown}; one of {list(ORACLE_PROMPTS)}")
    return {n: repeat_template(model, prompt=ORACLE_PROMPTS[n][0], reply=ORACLE_PROMPTS[n][1], shots=ORACLE_PROMPTS[n][2])
            for n in names}


def follow_words(model: Model, words: Sequence[str] = FOLLOW_WORDS) -> list[int]:
    """The ids of the words in ``words`` that are one token for this model."""
    ids = []
    for w in words:
        enc = model.encode(w, prepend_bos=False)
        if len(enc) == 1:
            ids.append(int(enc[0]))
    return ids


def prompt_follow_rate(model: Model, template: RepeatTemplate, words: Sequence[str] = FOLLOW_WORDS, **oracle_kw: Any) -> float:
    """Share of common single-token words the model repeats back under ``template``.

    A prompt the model does not follow (it answers with small talk) calls almost everything glitch;
    such a prompt measures the prompt, not the tokens.
    """
    ids = follow_words(model, words)
    if not ids:
        raise InterpError(f"none of the follow-check words is a single token for {model.spec}")
    res = repeat_oracle(model, ids, template=template, progress=False, **oracle_kw)
    judged = res.table[res.table.cls.isin(["glitch", "normal"])]
    return float((judged.cls == "normal").mean()) if len(judged) else 0.0


def consensus_labels(verdicts: pd.DataFrame, prompts: Sequence[str]) -> pd.DataFrame:
    """The ``all`` and ``majority`` labels from per-prompt verdicts.

    Args:
        verdicts: one column per prompt with ``glitch``/``normal`` (or ``""`` where the prompt was not
            asked, as in the cascade).
        prompts: the columns that vote.

    Returns:
        ``consensus_all``: ``glitch`` when every prompt said glitch, ``normal`` when any said normal,
        ``""`` when undecided; ``consensus_majority``: ``glitch``/``normal`` when every prompt was
        asked (more than half say glitch), else ``""``; ``n_glitch_votes``.
    """
    V = verdicts[list(prompts)].astype(str).to_numpy()
    g = V == "glitch"
    n = V == "normal"
    asked = g | n
    all_lab = np.where(n.any(axis=1), "normal", np.where(g.all(axis=1), "glitch", ""))
    k = len(prompts)
    maj = np.where(asked.all(axis=1), np.where(g.sum(axis=1) * 2 > k, "glitch", "normal"), "")
    return pd.DataFrame({"consensus_all": all_lab, "consensus_majority": maj, "n_glitch_votes": g.sum(axis=1)},
                        index=verdicts.index)


@dataclass
class ConsensusResult:
    """Every verdict of :func:`consensus_oracle` and what it cost.

    Attributes:
        table: ``token_id``, one column per prompt (``glitch``/``normal``, ``""`` where not asked),
            ``consensus_all``, ``consensus_majority``, ``n_glitch_votes``.
        seconds: oracle seconds per prompt (measured, or calls x seconds per call for looked-up verdicts).
        calls: oracle calls per prompt.
        prompts: the voting prompts, in asking order.
        cascade: whether later prompts were asked only while every earlier one said glitch.
    """

    table: pd.DataFrame
    seconds: dict[str, float]
    calls: dict[str, int]
    prompts: list[str]
    cascade: bool
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    @property
    def glitch_ids(self) -> list[int]:
        return self.table.loc[self.table.consensus_all == "glitch", "token_id"].astype(int).tolist()


def consensus_oracle(
    model: Model,
    token_ids: Sequence[int],
    templates: dict[str, RepeatTemplate],
    *,
    cascade: bool = True,
    known: Optional[dict[str, tuple[Callable[[list[int]], list[str]], float]]] = None,
    max_new_tokens: int = 10,
    batch_size: int = 128,
    progress: Optional[bool] = None,
) -> ConsensusResult:
    """Ask every prompt about every token (``cascade=False``) or as the ``all``-label cascade.

    Args:
        model: the model handle.
        token_ids: candidate tokens (the oracle judges their text; see :func:`repeat_oracle`).
        templates: voting prompts, asked in this order (put the cheapest or the stored one first).
        cascade: ask a prompt only about tokens every earlier prompt called glitch.
        known: prompt name -> ``(lookup, seconds_per_call)`` for prompts whose verdicts are stored;
            their time is the calls times the seconds per call measured in this run.
        max_new_tokens, batch_size, progress: as in :func:`repeat_oracle`.

    Returns:
        A :class:`ConsensusResult` in the order of ``token_ids``.
    """
    if not templates:
        raise InterpError("the consensus oracle needs at least one prompt")
    ids = np.asarray([int(t) for t in token_ids], dtype=int)
    known = known or {}
    table = pd.DataFrame({"token_id": ids})
    seconds, calls = {}, {}
    ask = np.ones(len(ids), dtype=bool)
    for name, tpl in templates.items():
        col = np.full(len(ids), "", dtype=object)
        todo = np.flatnonzero(ask)
        if name in known:
            lookup, per_call = known[name]
            col[todo] = lookup(ids[todo].tolist()) if len(todo) else []
            seconds[name] = float(len(todo) * per_call)
        else:
            t0 = time.perf_counter()
            if len(todo):
                col[todo] = repeat_oracle(model, ids[todo].tolist(), max_new_tokens=max_new_tokens, batch_size=batch_size,
                                          template=tpl, progress=progress).table.cls.to_numpy()
            seconds[name] = time.perf_counter() - t0
        calls[name] = int(len(todo))
        bad = set(col[todo]) - {"glitch", "normal"}
        if bad:
            raise InterpError(f"the consensus oracle needs candidate tokens; prompt {name!r} classed some as {sorted(bad)}")
        table[name] = col
        if cascade:
            ask &= col == "glitch"
    table = pd.concat([table, consensus_labels(table, list(templates))], axis=1)
    settings = {"prompts": {n: t.describe() for n, t in templates.items()}, "cascade": cascade,
                "stored": sorted(known), "max_new_tokens": max_new_tokens}
    return ConsensusResult(table, seconds, calls, list(templates), cascade, settings)


def agreement_summary(verdicts: pd.DataFrame, prompts: Sequence[str], single: str = SINGLE_PROMPT) -> dict[str, Any]:
    """Prevalence under each prompt and under the consensus labels, and how often prompts agree.

    Args:
        verdicts: every prompt asked about every token (``cascade=False``), with consensus columns.
        prompts: the voting prompts.
        single: the single-prompt label's column.

    Returns:
        ``prevalence_<prompt>``, ``prevalence_consensus_all``, ``prevalence_consensus_majority``,
        ``agreement_<a>_<b>`` (share of tokens with the same verdict), ``agreement_all`` (every
        prompt the same), ``single_glitch_kept_all`` (share of the single prompt's glitch tokens that
        are consensus glitch) and ``n_tokens``.
    """
    out: dict[str, Any] = {"n_tokens": int(len(verdicts))}
    for p in prompts:
        out[f"prevalence_{p}"] = float((verdicts[p] == "glitch").mean())
    out["prevalence_consensus_all"] = float((verdicts.consensus_all == "glitch").mean())
    out["prevalence_consensus_majority"] = float((verdicts.consensus_majority == "glitch").mean())
    for a, b in combinations(prompts, 2):
        out[f"agreement_{a}_{b}"] = float((verdicts[a] == verdicts[b]).mean())
    V = verdicts[list(prompts)].to_numpy()
    out["agreement_all"] = float((V == V[:, :1]).all(axis=1).mean())
    if single in prompts:
        g = verdicts[verdicts[single] == "glitch"]
        out["single_glitch_kept_all"] = float((g.consensus_all == "glitch").mean()) if len(g) else float("nan")
        out["single_glitch_kept_majority"] = float((g.consensus_majority == "glitch").mean()) if len(g) else float("nan")
    return out
