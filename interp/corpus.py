"""Text corpora shared by the analyses.

``generic_texts()`` is a fixed set of varied English paragraphs shipped with the package (written
for this project): the default text for perplexity and for model-based token-frequency estimates
when the user gives no corpus. ``read_texts(path)`` reads a user's text file or folder.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from interp.errors import InterpError

GENERIC_ID = "interp-generic-v1"


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
