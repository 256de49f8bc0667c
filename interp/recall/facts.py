"""The factual-recall tasks: relations, facts, prompt templates and the fixed train/test split.

The facts live in ``interp/data/recall/facts.json`` (written for this project). Each relation has
one template body (``"the capital of {X} is"``), a few demonstration facts for the k-shot form and
at least 40 facts, each marked ``train`` or ``test`` in the file (the split is never drawn at run
time). Every relation shares the lead-ins of the paper's varied templates (``"As we all know, "``
...), so template ``t`` of a relation is ``leadins[t] + body``.

A zero-shot prompt is ``leadin + body(X)``; a k-shot prompt puts ``k`` demonstrations of the same
relation (canonical template, one per line, answer and full stop) in front; the demonstrations are a
shared prefix for :func:`interp.capture`. The argument span (the tokens of ``X``) is located through
the tokenizer's character offsets, so it is right whatever the tokenizer merges.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Optional, Sequence

from interp.errors import InterpError
from interp.model import Model

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, answer) triple of the packaged data."""

    relation: str
    subject: str
    answer: str
    split: str
    index: int


@dataclass
class Relation:
    """A relation with its template body, demonstrations and facts."""

    name: str
    domain: str
    template: str
    demos: list[tuple[str, str]]
    facts: list[Fact]


@dataclass
class PromptSet:
    """Prompts of one shot form, ready for :func:`interp.capture` (one call per relation).

    Attributes:
        shots: number of demonstrations in front of each prompt (0 = zero-shot).
        facts: the fact of each prompt.
        templates: the template index of each prompt.
        texts: the prompt text after the shared prefix.
        prefixes: relation -> the shared demonstration prefix (``None`` for zero-shot).
        token_ids: full token ids of each prompt, prefix included.
        arg_positions: absolute positions of the argument's tokens in each prompt.
        answer_ids: first token of ``" " + answer``.
        arg_token_ids: first token of ``" " + subject`` (the argument's unembedding direction).
    """

    shots: int
    facts: list[Fact]
    templates: list[int]
    texts: list[str]
    prefixes: dict[str, Optional[str]]
    token_ids: list[list[int]]
    arg_positions: list[list[int]]
    answer_ids: list[int]
    arg_token_ids: list[int]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.facts)

    def rows(self, relation: Optional[str] = None, split: Optional[str] = None, among: Optional[Sequence[int]] = None) -> list[int]:
        """Indices of prompts of one relation and/or split (optionally within ``among``)."""
        pool = range(len(self.facts)) if among is None else among
        return [i for i in pool if (relation is None or self.facts[i].relation == relation)
                and (split is None or self.facts[i].split == split)]

    @property
    def relations(self) -> list[str]:
        return list(dict.fromkeys(f.relation for f in self.facts))


@lru_cache(maxsize=4)
def _load(path: Optional[str]) -> dict[str, Any]:
    if path is None:
        text = resources.files("interp").joinpath("data/recall/facts.json").read_text(encoding="utf-8")
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise InterpError(f"cannot read facts file {path}: {e.strerror}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InterpError(f"facts file {path or 'facts.json'} is not valid JSON: {e}") from e


def leadins(path: Optional[str] = None) -> list[str]:
    """The template lead-ins shared by every relation (template 0 has none)."""
    return list(_load(path)["leadins"])


def load_relations(names: Optional[Sequence[str]] = None, path: Optional[str] = None) -> list[Relation]:
    """The packaged relations (or those in ``path``), optionally only ``names``.

    Args:
        names: relation names to keep, in that order; all when None.
        path: a facts JSON file of the same layout as the packaged one.

    Returns:
        The relations with their facts.
    """
    data = _load(path)
    rels = data.get("relations", {})
    wanted = list(rels) if not names else list(names)
    unknown = [n for n in wanted if n not in rels]
    if unknown:
        raise InterpError(f"unknown relation(s) {', '.join(unknown)}; known: {', '.join(rels)}")
    out = []
    for name in wanted:
        r = rels[name]
        if "{X}" not in r["template"]:
            raise InterpError(f"relation {name}: template {r['template']!r} has no {{X}}")
        facts = []
        for i, f in enumerate(r["facts"]):
            if f.get("split") not in SPLITS:
                raise InterpError(f"relation {name} fact {i}: split must be train or test, not {f.get('split')!r}")
            facts.append(Fact(name, f["subject"], f["answer"], f["split"], i))
        out.append(Relation(name, r.get("domain", ""), r["template"], [(d["subject"], d["answer"]) for d in r["demos"]], facts))
    return out


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def template_text(relation: Relation, leadin: str, subject: str) -> tuple[str, int, int]:
    """One prompt and the character span of its subject.

    Returns:
        ``(text, start, end)`` with ``text[start:end] == subject``.
    """
    body = relation.template if leadin else _sentence(relation.template)
    pre, post = body.split("{X}", 1)
    if not leadin and not pre:
        subject_text = _sentence(subject)
    else:
        subject_text = subject
    start = len(leadin) + len(pre)
    return leadin + pre + subject_text + post, start, start + len(subject_text)


def demo_prefix(relation: Relation, k: int) -> str:
    """The k demonstrations of a relation, one per line, as a shared prompt prefix."""
    if k > len(relation.demos):
        raise InterpError(f"relation {relation.name} has {len(relation.demos)} demonstrations, asked for {k}")
    lines = []
    for subj, ans in relation.demos[:k]:
        text, _, _ = template_text(relation, "", subj)
        lines.append(f"{text} {ans}.")
    return "\n".join(lines) + "\n"


def argument_word(subject: str) -> str:
    """The subject without a leading article (its first token is the argument's unembedding)."""
    return subject[4:] if subject.lower().startswith("the ") and len(subject) > 4 else subject


def _argument_positions(model: Model, text: str, start: int, end: int) -> tuple[list[int], list[int]]:
    enc = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offs = list(enc["input_ids"]), enc["offset_mapping"]
    pos = [j for j, (a, b) in enumerate(offs) if a < end and b > start and b > a]
    return ids, pos


def build_prompts(
    model: Model,
    relations: Sequence[Relation],
    shots: int = 0,
    templates: Sequence[int] = (0,),
    max_facts: Optional[int] = None,
    facts_filter: Optional[set[tuple[str, int]]] = None,
    split: Optional[str] = None,
    path: Optional[str] = None,
) -> PromptSet:
    """Prompts for every (fact, template) of the relations, in one shot form.

    Args:
        model: tokenizes the prompts and locates each argument.
        relations: from :func:`load_relations`.
        shots: demonstrations in front of each prompt (0 = zero-shot).
        templates: lead-in indices to use.
        max_facts: keep the first ``max_facts`` facts of each relation (train and test alternate in
            the file, so the split stays balanced).
        facts_filter: keep only facts whose ``(relation, index)`` is in this set.
        split: keep only ``"train"`` or ``"test"`` facts.
        path: the facts file the lead-ins come from (default: the packaged one).

    Returns:
        The :class:`PromptSet`.
    """
    lead = leadins(path)
    bad = [t for t in templates if not 0 <= t < len(lead)]
    if bad or not templates:
        raise InterpError(f"template indices must be in 0..{len(lead) - 1}, got {list(templates)}")
    if shots < 0:
        raise InterpError("shots must be >= 0")
    if split is not None and split not in SPLITS:
        raise InterpError(f"split must be train or test, not {split!r}")
    ps = PromptSet(shots, [], [], [], {}, [], [], [], [])
    for rel in relations:
        prefix = demo_prefix(rel, shots) if shots else None
        ps.prefixes[rel.name] = prefix
        prefix_ids = model.encode(prefix) if prefix else []
        bos = 1 if (not prefix and model.prepend_bos) else 0
        facts = rel.facts[:max_facts] if max_facts else rel.facts
        for f in facts:
            if facts_filter is not None and (f.relation, f.index) not in facts_filter:
                continue
            if split is not None and f.split != split:
                continue
            for t in templates:
                text, a, b = template_text(rel, lead[t], f.subject)
                ids, pos = _argument_positions(model, text, a, b)
                full = prefix_ids + ([model.bos_token_id] if bos else []) + ids
                off = len(prefix_ids) + bos
                ps.facts.append(f)
                ps.templates.append(t)
                ps.texts.append(text)
                ps.token_ids.append(full)
                ps.arg_positions.append([p + off for p in pos])
                ps.answer_ids.append(model.first_token(" " + f.answer))
                ps.arg_token_ids.append(model.first_token(" " + argument_word(f.subject)))
    if not ps.facts:
        raise InterpError("no prompts: the relation/fact/split selection is empty")
    return ps


def independent_relations(
    relations: Sequence[Relation],
    facts: Sequence[dict[str, Any]],
    max_facts: Optional[int] = None,
) -> list[Relation]:
    """Facts from another source (e.g. :func:`interp.countries.countryinfo_facts`) asked with the
    packaged relations' templates and demonstrations.

    A fact whose subject is one of the relation's packaged train facts or demonstrations is left out
    (the mitigation is chosen on the train facts, so those would not be independent); duplicates
    and relations the packaged data does not have are dropped. Facts keep the source's order and
    are marked with split ``"independent"``.

    Args:
        relations: the packaged relations (:func:`load_relations`).
        facts: dicts with ``relation``, ``subject``, ``answer``.
        max_facts: keep at most this many per relation (the first ones).

    Returns:
        One :class:`Relation` per packaged relation that has independent facts.
    """
    out = []
    for rel in relations:
        seen = {f.subject.lower() for f in rel.facts if f.split == "train"} | {s.lower() for s, _ in rel.demos}
        mine: list[Fact] = []
        for f in facts:
            if f.get("relation") != rel.name or not f.get("subject") or not f.get("answer"):
                continue
            subj, ans = str(f["subject"]).strip(), str(f["answer"]).strip()
            if subj.lower() in seen:
                continue
            seen.add(subj.lower())
            mine.append(Fact(rel.name, subj, ans, "independent", len(mine)))
            if max_facts and len(mine) >= max_facts:
                break
        if mine:
            out.append(Relation(rel.name, rel.domain, rel.template, list(rel.demos), mine))
    return out
