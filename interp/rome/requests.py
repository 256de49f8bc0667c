"""Counterfactual edit requests (CounterFact format) and where the subject sits in a prompt.

A request rewrites one fact: ``prompt`` holds ``{}`` for the ``subject``; the model should answer
``target_new`` instead of ``target_true``. Paraphrase prompts test generalisation, neighbourhood
prompts (other subjects of the same relation, with their own true answers) test locality.
The packaged set (``interp/data/rome/requests.json``, id ``interp-rome-counterfacts-v1``) was
written for this project; a third of its prompts start with a one-token subject, which puts the
subject's last token at position 0 when the model adds no BOS (SmolLM2), the collapse case of
Yang et al. (2024).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence, Union

from interp.errors import InterpError
from interp.model import Model

REQUESTS_ID = "interp-rome-counterfacts-v1"


@dataclass
class EditRequest:
    """One counterfactual rewrite.

    Attributes:
        case_id: index in the request file.
        relation: relation name (``city_country``, ...).
        prompt: the relation prompt with ``{}`` where the subject goes.
        subject: the subject string.
        target_true: the true object (with its leading space).
        target_new: the counterfactual object.
        paraphrase_prompts: other phrasings of the same fact (subject filled in).
        neighborhood_prompts: ``(prompt, true_target)`` pairs about other subjects.
    """

    case_id: int
    relation: str
    prompt: str
    subject: str
    target_true: str
    target_new: str
    paraphrase_prompts: list[str] = field(default_factory=list)
    neighborhood_prompts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The edit prompt with the subject filled in."""
        return self.prompt.format(self.subject)


def parse_requests(raw: Sequence[dict]) -> list[EditRequest]:
    """Validate request dicts (CounterFact layout) and turn them into :class:`EditRequest`."""
    out = []
    for i, r in enumerate(raw):
        missing = {"prompt", "subject", "target_true", "target_new"} - set(r)
        if missing:
            raise InterpError(f"request {i} lacks {sorted(missing)}")
        if r["prompt"].count("{}") != 1:
            raise InterpError(f"request {i}: prompt must hold exactly one '{{}}' for the subject, got {r['prompt']!r}")
        if r["target_true"].strip() == r["target_new"].strip():
            raise InterpError(f"request {i}: target_new equals target_true ({r['target_new']!r})")
        neigh = [(n["prompt"], n["target"]) if isinstance(n, dict) else tuple(n) for n in r.get("neighborhood_prompts", [])]
        out.append(
            EditRequest(
                case_id=int(r.get("case_id", i)),
                relation=str(r.get("relation", "")),
                prompt=r["prompt"],
                subject=r["subject"],
                target_true=r["target_true"],
                target_new=r["target_new"],
                paraphrase_prompts=list(r.get("paraphrase_prompts", [])),
                neighborhood_prompts=neigh,
            )
        )
    if not out:
        raise InterpError("no edit requests")
    return out


def load_requests(path: Union[None, str, Path] = None) -> list[EditRequest]:
    """The packaged counterfactual requests, or those in a user's JSON file.

    Args:
        path: a JSON file holding a list of requests or ``{"requests": [...]}``; None for the
            packaged set.

    Returns:
        The requests, in file order.
    """
    if path is None:
        text = resources.files("interp").joinpath("data/rome/requests.json").read_text(encoding="utf-8")
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise InterpError(f"no such request file: {p}")
        text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InterpError(f"request file is not JSON: {e}") from e
    return parse_requests(data["requests"] if isinstance(data, dict) else data)


def subject_last_position(model: Model, context: str, prompt: str, subject: str) -> tuple[list[int], int]:
    """Token ids of ``context + prompt.format(subject)`` and the index of the subject's last token.

    The index is found as ROME finds it: the length of the tokenised text up to the end of the
    subject, minus one (BOS included when the model's policy adds it).

    Args:
        model: the model handle (its tokenizer and BOS policy).
        context: text put before the prompt (a generated prefix, or ``""``).
        prompt: the relation prompt with ``{}``.
        subject: the subject.

    Returns:
        ``(token_ids, position)``.
    """
    if "{}" not in prompt:
        raise InterpError(f"prompt {prompt!r} has no '{{}}' for the subject")
    head = context + prompt[: prompt.index("{}")] + subject
    ids = model.encode(context + prompt.format(subject))
    pos = len(model.encode(head)) - 1
    if pos < 0 or pos >= len(ids):
        raise InterpError(f"cannot locate subject {subject!r} in {context + prompt.format(subject)!r}")
    return ids, pos


def first_token_ids(model: Model, targets: Sequence[str]) -> list[int]:
    """The first token of each answer string (answers are scored by their first token)."""
    return [model.first_token(t) for t in targets]


def subject_position_class(position: int, prompt: str, offset: Optional[int] = 0) -> str:
    """``"first"`` when the subject's last token is the sequence's first real token, ``"subject-first"``
    when the prompt starts with a multi-token subject, ``"later"`` otherwise."""
    if position == (offset or 0):
        return "first"
    return "subject-first" if prompt.startswith("{}") else "later"


COUNTRY_CAPITAL_PROMPTS = ("The capital of {} is", "{}'s capital city is", "The capital city of {} is")


def country_capital_requests(n: int, seed: int = 0, first_case_id: int = 10_000) -> list[EditRequest]:
    """Counterfactual requests built from real facts: country -> capital, rewritten to another
    country's capital (``interp.countries.countryinfo_facts()``, relation ``country_capital``).

    Each request moves a country's capital to the capital of another country drawn with ``seed``;
    its paraphrases use the other capital phrasings, its neighbourhood two other countries with
    their true capitals. Countries named as a subject at the start of a prompt exercise the
    first-token position for one-token country names.

    Args:
        n: requests to build (at most one per country; 0 for none).
        seed: seeds the choice of countries and of the new capitals.
        first_case_id: case id of the first request (kept apart from the packaged ids).

    Returns:
        The requests, in the seeded order.
    """
    if n <= 0:
        return []
    try:
        from interp.countries import countryinfo_facts
    except ImportError as e:
        raise InterpError("the country facts (interp.countries) are not available in this install") from e
    import random

    facts = [f for f in countryinfo_facts() if f["relation"] == "country_capital" and f["subject"] and f["answer"]]
    by_country: dict[str, str] = {}
    for f in facts:
        by_country.setdefault(f["subject"].strip(), f["answer"].strip())
    countries = sorted(by_country)
    if len(countries) < 4:
        raise InterpError(f"only {len(countries)} country-capital facts; need at least 4")
    rng = random.Random(seed)
    chosen = rng.sample(countries, min(n, len(countries)))
    out = []
    for i, c in enumerate(chosen):
        others = [o for o in countries if o != c and by_country[o] != by_country[c]]
        new = by_country[rng.choice(others)]
        neigh = rng.sample(others, 2)
        prompt = "{} has its capital in" if i % 2 else COUNTRY_CAPITAL_PROMPTS[0]  # half put the country first
        out.append(EditRequest(
            case_id=first_case_id + i, relation="country_capital", prompt=prompt, subject=c,
            target_true=" " + by_country[c], target_new=" " + new,
            paraphrase_prompts=[p.format(c) for p in COUNTRY_CAPITAL_PROMPTS if p != prompt][:2],
            neighborhood_prompts=[(COUNTRY_CAPITAL_PROMPTS[0].format(o), " " + by_country[o]) for o in neigh],
        ))
    return out
