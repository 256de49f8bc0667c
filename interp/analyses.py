"""The analysis registry: name -> module implementing it.

Each analysis module exposes:

* ``DESCRIPTION``: one line for ``interp run --help``;
* ``DEFAULTS``: a dict of its parameters and their defaults (``--set key=value`` overrides them);
* ``run(model, run, quick=False, **params) -> dict``: computes everything through
  :func:`interp.capture`, writes tables and figures to the :class:`interp.results.Run`, and returns
  the summary numbers.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from interp.errors import InterpError

ANALYSES: dict[str, str] = {
    "recall": "interp.recall.pipeline",
    "glitch": "interp.glitch.pipeline",
    "rome": "interp.rome.pipeline",
}


def get(name: str) -> ModuleType:
    """Import the module of an analysis by name."""
    if name not in ANALYSES:
        raise InterpError(f"unknown analysis {name!r}; one of {', '.join(ANALYSES)}")
    return importlib.import_module(ANALYSES[name])
