"""Results export: one folder per analysis run, recording how every number was made.

A :class:`Run` owns ``OUT/ANALYSIS/``::

    tables/NAME.csv, tables/NAME.parquet    pandas tables
    figures/NAME.html, figures/NAME.json    plotly figures: HTML that loads the shared ``../../plotly.min.js``
    figures/NAME.png                        (written once per output folder), the figure's JSON, PNG via kaleido
    summary.json                            headline numbers
    manifest.json                           model spec and weight hash, package versions, seed,
                                            parameters, numerics mode, wall time per stage
    stages/NAME.pkl                         finished stages, so an interrupted run resumes

Stages are resumable: :meth:`Run.stage` returns a stored result when the stage finished before
with the same model, parameters and seed, and computes (then stores) it otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pickle
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import torch

from interp.errors import InterpError

_PACKAGES = (
    "interp", "torch", "transformers", "transformer-lens", "numpy", "pandas", "scikit-learn",
    "scipy", "plotly", "kaleido", "gguf", "safetensors",
)


def package_versions() -> dict[str, Optional[str]]:
    """Installed versions of the packages a result depends on."""
    out: dict[str, Optional[str]] = {"python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = None
    return out


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return None if np.isnan(x) else float(x)
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist())
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return repr(x)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=False))
    tmp.replace(path)


class Run:
    """The output folder of one analysis on one model.

    Args:
        out: the parent output folder; the run writes ``out/analysis``.
        analysis: analysis name (``recall``, ``glitch``, ``rome``).
        model: the model handle (its :meth:`~interp.model.Model.describe` goes in the manifest);
            may be None for runs that only read stored data.
        params: the analysis parameters (part of every stage's resume key).
        seed: the seed (set for Python, NumPy and torch now).
        resume: reuse finished stages with the same key (default True).
    """

    def __init__(
        self,
        out: str | Path,
        analysis: str,
        model: Any = None,
        params: Optional[dict[str, Any]] = None,
        seed: int = 0,
        resume: bool = True,
    ) -> None:
        self.dir = Path(out) / analysis
        self.analysis = analysis
        self.model = model
        self.params = dict(params or {})
        self.seed = seed
        self.resume = resume
        for sub in ("tables", "figures", "stages"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.t0 = time.perf_counter()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.stage_times: dict[str, dict[str, Any]] = {}
        self._summary: dict[str, Any] = {}
        self._figures: list[tuple[str, Any]] = []
        self.notes: list[str] = []
        seed_everything(seed)
        self._key_base = {
            "model": model.describe() if model is not None else None,
            "params": self.params,
            "seed": seed,
        }

    # -------------------------------------------------------------- stages
    def _stage_key(self, name: str, extra: Any) -> str:
        blob = json.dumps(_jsonable({"base": self._key_base, "stage": name, "extra": extra}), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def stage(self, name: str, fn: Callable[[], Any], key: Any = None) -> Any:
        """Run ``fn`` once per (model, params, seed, ``key``); later calls load its stored result.

        The result is pickled to ``stages/NAME.pkl`` as soon as it is computed, so an
        interrupted run resumes after its last finished stage.
        """
        path = self.dir / "stages" / f"{name}.pkl"
        k = self._stage_key(name, key)
        if self.resume and path.is_file():
            try:
                with open(path, "rb") as f:
                    stored = pickle.load(f)
                if stored.get("key") == k:
                    self.stage_times[name] = {"seconds": stored.get("seconds", 0.0), "resumed": True}
                    return stored["value"]
            except Exception:  # noqa: BLE001 - a corrupt stage file is recomputed
                pass
        t = time.perf_counter()
        value = fn()
        secs = time.perf_counter() - t
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump({"key": k, "seconds": secs, "value": value}, f)
        tmp.replace(path)
        self.stage_times[name] = {"seconds": secs, "resumed": False}
        self._write_manifest(finished=False)
        return value

    def timed(self, name: str) -> "_Timer":
        """Context manager that records the wall time of an unstored step."""
        return _Timer(self, name)

    # -------------------------------------------------------------- outputs
    def table(self, name: str, df: pd.DataFrame) -> Path:
        """Write ``tables/NAME.csv`` and ``tables/NAME.parquet``."""
        if not isinstance(df, pd.DataFrame):
            raise InterpError(f"table {name!r} must be a pandas DataFrame")
        base = self.dir / "tables" / name
        df.to_csv(base.with_suffix(".csv"), index=False)
        try:
            df.to_parquet(base.with_suffix(".parquet"), index=False)
        except Exception as e:  # noqa: BLE001 - mixed object columns: stringify them
            df.astype({c: str for c in df.columns if df[c].dtype == object}).to_parquet(base.with_suffix(".parquet"), index=False)
            self.notes.append(f"table {name}: object columns written to parquet as strings ({type(e).__name__})")
        return base.with_suffix(".csv")

    def figure(self, name: str, fig: Any) -> Path:
        """Write ``figures/NAME.html`` and ``figures/NAME.json`` now; the PNG is rendered in :meth:`finish`.

        The HTML loads plotly.js from ``OUT/plotly.min.js`` (one copy shared by every figure and the
        report page, written here when missing), so it works offline without embedding 4.8 MB each.
        """
        path = write_figure(fig, self.dir / "figures", name, write_plotlyjs(self.dir.parent))
        self._figures.append((name, fig))
        return path

    def summary(self, **values: Any) -> None:
        """Add headline numbers to ``summary.json``."""
        self._summary.update(values)
        write_json(self.dir / "summary.json", self._summary)

    def note(self, text: str) -> None:
        """Record a remark (fallbacks taken, data sources used) in the manifest."""
        self.notes.append(text)

    def _write_manifest(self, finished: bool) -> None:
        manifest = {
            "analysis": self.analysis,
            "started": self.started,
            "finished": finished,
            "model": self._key_base["model"],
            "numerics": getattr(self.model, "numerics", None),
            "seed": self.seed,
            "params": self.params,
            "packages": package_versions(),
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else "",
            "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
            "stages": self.stage_times,
            "wall_seconds": time.perf_counter() - self.t0,
            "figures": [n for n, _ in self._figures],
            "tables": sorted(p.stem for p in (self.dir / "tables").glob("*.csv")),
            "notes": self.notes,
        }
        write_json(self.dir / "manifest.json", manifest)

    def finish(self, png: bool = True) -> Path:
        """Render PNGs (one browser session for all figures) and write the final manifest."""
        if png and self._figures:
            with self.timed("render_png"):
                render_pngs([(f, self.dir / "figures" / f"{n}.png") for n, f in self._figures])
        self._write_manifest(finished=True)
        return self.dir


class _Timer:
    def __init__(self, run: Run, name: str) -> None:
        self.run, self.name = run, name

    def __enter__(self) -> "_Timer":
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.run.stage_times[self.name] = {"seconds": time.perf_counter() - self.t, "resumed": False}


PLOTLYJS = "plotly.min.js"


def write_plotlyjs(folder: str | Path) -> Path:
    """Write ``folder/plotly.min.js`` from the installed plotly package, unless it holds this version.

    Args:
        folder: where the bundle goes (an output folder: pages and figures beneath it load it).

    Returns:
        The bundle's path.
    """
    import plotly.offline

    path = Path(folder) / PLOTLYJS
    js = plotly.offline.get_plotlyjs()
    if not (path.is_file() and path.stat().st_size == len(js.encode())):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(js, encoding="utf-8")
        tmp.replace(path)
    return path


def write_figure(fig: Any, folder: str | Path, name: str, plotlyjs: str | Path) -> Path:
    """Write a plotly figure as ``folder/NAME.html`` (loading a shared plotly.js) and ``folder/NAME.json``.

    Args:
        fig: the plotly figure.
        folder: the figures folder.
        name: file stem.
        plotlyjs: the shared plotly.js bundle; the HTML references it by a path relative to ``folder``.

    Returns:
        The HTML path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = Path(os.path.relpath(Path(plotlyjs).resolve(), folder.resolve())).as_posix()
    html = fig.to_html(include_plotlyjs=src, full_html=True)
    for suffix, text in ((".html", html), (".json", fig.to_json())):
        path = folder / f"{name}{suffix}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return folder / f"{name}.html"


def render_pngs(items: list[tuple[Any, Path]]) -> None:
    """Render plotly figures to PNG with kaleido in one browser session.

    Raises:
        InterpError: when kaleido finds no Chrome/Chromium (install Debian's ``chromium``).
    """
    import plotly.io as pio

    if not items:
        return
    figs = [f for f, _ in items]
    paths = [p for _, p in items]
    # write_images ignores the layout's size (it renders 700x500) unless sizes are passed explicitly
    widths = [int(f.layout.width or 1000) for f in figs]
    heights = [int(f.layout.height or 620) for f in figs]
    try:
        pio.write_images(figs, paths, scale=1, width=widths, height=heights)
    except Exception as e:  # noqa: BLE001
        raise InterpError(
            f"PNG export failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); kaleido needs "
            "Chrome or Chromium: `apt-get install chromium` (or `plotly_get_chrome`)"
        ) from e
