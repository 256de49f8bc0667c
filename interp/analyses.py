"""The analysis registry: name -> module implementing it.

Each analysis module exposes:

* ``DESCRIPTION``: one line for ``interp run --help``;
* ``DEFAULTS``: a dict of its parameters and their defaults (``--set key=value`` overrides them);
* ``run(model, run, quick=False, **params) -> dict``: computes everything through
  :func:`interp.capture`, writes tables and figures to the :class:`interp.results.Run`, and returns
  the summary numbers; ``params`` holds only what the caller set;
* optionally ``resolve_params(params, quick) -> dict``: the parameters a run really uses (quick
  sizes filled in), recorded in the manifest and part of every stage's resume key.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Union

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


def run_analysis(name: str, model: Any, out: Union[str, Path], quick: bool = False, seed: int = 0, fresh: bool = False,
                 png: bool = True, overrides: dict[str, Any] | None = None) -> Path:
    """Run one analysis into ``out/name`` and return that folder (see :func:`run`)."""
    from interp.results import Run

    mod = get(name)
    defaults = getattr(mod, "DEFAULTS", {})
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise InterpError(f"{name} has no parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(defaults))}")
    # record the parameters the run really uses: quick sizes apply only where the caller set nothing
    resolve = getattr(mod, "resolve_params", None)
    params = dict(resolve(overrides, quick)) if resolve is not None else {**defaults, **overrides}
    params["quick"] = quick
    run = Run(Path(out), name, model=model, params=params, seed=seed, resume=not fresh)
    summary = mod.run(model, run, quick=quick, **overrides)
    if summary:
        run.summary(**summary)
    folder = run.finish(png=png)
    print(f"{name}: wrote {folder}", file=sys.stderr)
    return folder


def run(name: str, model: Any, out: Union[str, Path] = "out", *, quick: bool = False, seed: int = 0,
        fresh: bool = False, png: bool = True, **params: Any) -> dict[str, Any]:
    """Run an analysis (``recall``, ``glitch``, ``rome``) as ``interp run`` does, from Python.

    Args:
        name: the analysis.
        model: a :class:`interp.Model`.
        out: results go to ``out/name`` (tables, figures, summary.json, manifest.json).
        quick: small data sizes.
        seed: seed for Python, NumPy and torch.
        fresh: recompute finished stages instead of resuming them.
        png: also write PNG figures.
        **params: the analysis's parameters (its ``DEFAULTS``).

    Returns:
        The summary numbers (``summary.json``).
    """
    folder = run_analysis(name, model, out, quick, seed, fresh, png, params)
    return json.loads((folder / "summary.json").read_text())


def script_parser(doc: str, out: str = "figures", out_help: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line every paper script in ``analyses/`` shares: ``--model``, ``--out``, ``--quick``.

    Args:
        doc: the script's docstring; its first line is the ``--help`` description.
        out: the default output folder.
        out_help: what ``--out`` means for this script.
    """
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="model spec (see `interp models`)")
    ap.add_argument("--out", default=out, help=out_help)
    ap.add_argument("--quick", action="store_true", help="the analysis's quick sizes")
    return ap
