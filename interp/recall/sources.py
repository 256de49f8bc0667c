"""The core data the recall analysis reads, in one place: token frequency, natural text and the
independent country facts (:mod:`interp.frequency`, :mod:`interp.corpus`, :mod:`interp.countries`).

Analyses call these through the module (``sources.token_frequency(...)``), so a test can stand in
for a data source without the packaged corpora.
"""

from __future__ import annotations

from typing import Any

from interp.model import Model


def token_frequency(model: Model, source: str = "wikipedia") -> Any:
    """:func:`interp.frequency.token_frequency` (``.counts``, ``.occurs``, ``.source``)."""
    from interp.frequency import token_frequency as tf

    return tf(model, source=source)


def texts(corpus: str = "wikipedia", split: str = "all") -> tuple[list[str], str]:
    """:func:`interp.corpus.natural_texts`: paragraphs of one split and the corpus id to record."""
    from interp.corpus import natural_texts

    return natural_texts(corpus, split=split)


def independent_facts() -> list[dict[str, Any]]:
    """:func:`interp.countries.countryinfo_facts`: ``relation``, ``subject``, ``answer`` dicts."""
    from interp.countries import countryinfo_facts

    return countryinfo_facts()
