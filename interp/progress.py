"""Progress on long loops: a bar on a terminal, a plain line now and then in a log file.

``INTERP_PROGRESS`` chooses: ``1`` (default) draws tqdm bars, ``lines`` prints one line at most
every ``INTERP_PROGRESS_EVERY`` seconds (default 60) once a loop has run that long, with the count,
the time so far and an estimate of the time left, and ``0`` says nothing. The command line sets
``lines`` when stderr is not a terminal (bars redraw one line with carriage returns: noise in a log
file), unless the variable is already set.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, Optional, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def mode() -> str:
    """``"bars"``, ``"lines"`` or ``"off"``, from ``INTERP_PROGRESS``."""
    v = os.environ.get("INTERP_PROGRESS", "1").strip().lower()
    return "off" if v == "0" else "lines" if v == "lines" else "bars"


def track(iterable: Iterable[T], desc: str, total: Optional[int] = None, unit: str = "it", disable: bool = False,
          leave: bool = True) -> Iterable[T]:
    """``iterable``, reporting progress as :func:`mode` says (nothing when ``disable``).

    Args:
        iterable: what is looped over.
        desc: what the loop does, as the line or bar calls it.
        total: how many items (default ``len(iterable)`` where it has one).
        unit: what an item is ("batch", "chunk", "edit").
        disable: report nothing (a loop too short to be worth it).
        leave: keep the finished bar on a terminal.
    """
    m = mode()
    if disable or m == "off":
        return iterable
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if m == "lines":
        return _lines(iterable, desc, total, unit)
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave)


def _span(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _plural(word: str) -> str:
    """``batch`` -> ``batches``, ``edit`` -> ``edits``, ``tokens`` stays."""
    if word.endswith("s"):
        return word
    return word + ("es" if word.endswith(("ch", "sh", "x", "z")) else "s")


def _lines(iterable: Iterable[T], desc: str, total: Optional[int], unit: str) -> Iterator[T]:
    every = float(os.environ.get("INTERP_PROGRESS_EVERY", "60"))
    units = "items" if unit == "it" else _plural(unit)
    start = last = time.monotonic()
    for i, x in enumerate(iterable, 1):
        yield x  # the caller's loop body runs here: the item is done when the generator resumes
        now = time.monotonic()
        if now - last < every or (total is not None and i >= total):
            continue
        last = now
        spent = now - start
        if total:
            left = spent * (total - i) / i
            line = f"  {desc}: {i}/{total} {units} ({100 * i / total:.0f}%), {_span(spent)} so far, about {_span(left)} left"
        else:
            line = f"  {desc}: {i} {units if i > 1 else 'item' if unit == 'it' else unit}, {_span(spent)} so far"
        print(line, file=sys.stderr, flush=True)
