"""The analysis registry: name -> module implementing it.

Each analysis module exposes:

* ``DESCRIPTION``: one line for ``interp run --help``;
* ``PARAMS``: its declared parameters (:class:`interp.params.Params`, in ``interp/<name>/params.py``):
  type, allowed values, default, quick default, unit, meaning; ``DEFAULTS`` (name -> default) is
  derived from it and ``--set key=value`` overrides it;
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


def declared(name: str) -> Any:
    """The declared parameters (:class:`interp.params.Params`) of an analysis."""
    mod = get(name)
    params = getattr(mod, "PARAMS", None)
    if params is None:
        raise InterpError(f"analysis {name} declares no PARAMS")
    return params


def resolve_run_params(name: str, overrides: dict[str, Any] | None, quick: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the caller's parameters (before any model loads) and say what the run will record.

    Args:
        name: the analysis.
        overrides: the caller's values (``--set``), as given.
        quick: quick sizes where nothing is set.

    Returns:
        ``(checked, recorded)``: the caller's values converted to their declared types, and every
        parameter the run uses (quick sizes filled in, ``quick`` itself included): the manifest's
        ``params`` and part of every stage's resume key.

    Raises:
        InterpError: one line for an unknown name or a value not allowed.
    """
    mod = get(name)
    checked = declared(name).validate(dict(overrides or {}), quick)
    resolve = getattr(mod, "resolve_params", None)
    recorded = dict(resolve(checked, quick)) if resolve is not None else {**getattr(mod, "DEFAULTS", {}), **checked}
    recorded["quick"] = quick
    return checked, recorded


def run_analysis(name: str, model: Any, out: Union[str, Path], quick: bool = False, seed: int = 0, fresh: bool = False,
                 png: bool = True, overrides: dict[str, Any] | None = None) -> Path:
    """Run one analysis into ``out/name`` and return that folder (see :func:`run`).

    Every parameter is checked first (the model-dependent bounds too), before the folder is
    touched; the folder is locked while the run writes it and refused when it holds a run made
    with other settings, unless ``fresh``.
    """
    from interp.results import Run

    mod = get(name)
    checked, params = resolve_run_params(name, overrides, quick)
    if model is not None:
        declared(name).check_model(declared(name).effective(checked, quick), model)
    run = Run(Path(out), name, model=model, params=params, seed=seed, resume=not fresh)
    try:
        summary = mod.run(model, run, quick=quick, **checked)
        if summary:
            run.summary(**summary)
    except BaseException:
        run.close(failed=True)
        raise
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
