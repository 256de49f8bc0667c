"""Results export: one folder per analysis run, recording how every number was made.

A :class:`Run` owns ``OUT/ANALYSIS/``::

    tables/NAME.csv, tables/NAME.parquet    pandas tables
    figures/NAME.html, figures/NAME.json    plotly figures: HTML that loads the shared ``../../plotly.min.js``
    figures/NAME.png                        (written once per output folder), the figure's JSON, PNG via kaleido
    summary.json                            headline numbers
    manifest.json                           model spec and weight hash, package versions, seed,
                                            parameters, numerics mode, wall time per stage
    stages/NAME.json (+ .safetensors,       finished stages, so an interrupted run resumes (see
      .K.parquet)                           :mod:`interp.store`; never a pickle)
    .lock                                   held while a run writes the folder (pid, host, command)

Stages are resumable: :meth:`Run.stage` returns a stored result when the stage finished before
with the same model, parameters and seed, and computes (then stores) it otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import platform
import random
import sys
import time
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import torch

from interp.errors import InterpError
from interp.gemm import cpuinfo
from interp.store import (
    Unstorable, atomic_write, load_stage, read_stage_header, remove_tmp_files, save_stage, tmp_path, write_text,
)

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
    """Write JSON atomically (a temporary file in the same folder, then a rename)."""
    write_text(Path(path), json.dumps(_jsonable(obj), indent=2, sort_keys=False))


def progress(text: str) -> None:
    """One line of progress on stderr (a line per event, so a log file reads as a list)."""
    print(text, file=sys.stderr, flush=True)


def _ranks() -> int:
    """How many processes share this run's sharded passes (``torchrun`` ranks; 1 alone)."""
    from interp import distributed

    return distributed.current().size


@functools.lru_cache(maxsize=1)
def _cpu() -> dict:
    """The processor, as timings depend on it: its model name and the bf16 matrix instructions it has
    (``avx512_bf16``, ``amx_bf16``; a bf16 product runs about 2.5x float32's rate with the first alone
    and 4-5x with AMX on this project's shapes), read from ``/proc/cpuinfo`` where there is one."""
    info = cpuinfo()
    name, flags = info.get("model name", ""), set(info.get("flags", "").split())
    return {"model": name or platform.processor(), "bf16_instructions": sorted(flags & {"avx512_bf16", "amx_bf16"})}


def _command() -> str:
    return " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# folders whose lock this process holds -> the Run holding it
_HELD: "weakref.WeakValueDictionary[str, Run]" = weakref.WeakValueDictionary()


class FolderLock:
    """``FOLDER/.lock``: which process writes the folder (pid, host, start time, command).

    A lock left by a process that is gone (same host, dead pid) is taken over, with a note.
    """

    NAME = ".lock"

    def __init__(self, folder: Path) -> None:
        self.path = folder / self.NAME
        self.held = False
        self.note: Optional[str] = None

    @staticmethod
    def describe(info: dict[str, Any]) -> str:
        return (f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')} "
                f"({info.get('command') or 'no command recorded'})")

    def holder(self) -> Optional[dict[str, Any]]:
        """The live holder of the lock, or None when it is free or stale."""
        if not self.path.is_file():
            return None
        try:
            info = json.loads(self.path.read_text())
            pid, host = int(info["pid"]), str(info["host"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable: a crash mid-write; stale
        if host != socket.gethostname():
            return info  # cannot check another machine's processes
        if pid == os.getpid():
            owner = _HELD.get(str(self.path.parent.resolve()))
            return info if owner is not None and not owner.closed else None
        return info if _pid_alive(pid) else None

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            InterpError: when a live process holds it.
        """
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": _command()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self.holder()
                if other is not None:
                    raise InterpError(f"{self.path.parent} is in use by another run: {self.describe(other)}; "
                                      f"wait for it, or use another --out (remove {self.path} only if that run is gone)")
                try:
                    old = json.loads(self.path.read_text())
                    self.note = f"took over a stale lock of {self.describe(old)}"
                except (OSError, ValueError):
                    self.note = "took over an unreadable stale lock"
                self.path.unlink(missing_ok=True)
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(info))
            except BaseException:
                self.path.unlink(missing_ok=True)
                raise
            self.held = True
            return
        raise InterpError(f"could not take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs' results comparable: analysis, model and weights, numerics, seed, parameters."""
    model = manifest.get("model") or {}
    return {
        "analysis": manifest.get("analysis"),
        "model": model.get("spec"),
        "weight_hash": model.get("weight_hash"),
        "dtype": model.get("dtype"),
        "precision": model.get("precision") or model.get("dtype"),
        "numerics": manifest.get("numerics"),
        "seed": manifest.get("seed"),
        "params": _jsonable(manifest.get("params") or {}),
    }


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for k in new:
        if k == "params":
            continue
        if old.get(k) != new.get(k):
            out.append(f"{k} {old.get(k)!r} -> {new.get(k)!r}")
    po, pn = old.get("params") or {}, new.get("params") or {}
    for k in sorted(set(po) | set(pn)):
        if po.get(k, "<unset>") != pn.get(k, "<unset>"):
            out.append(f"{k} {po.get(k, '<unset>')!r} -> {pn.get(k, '<unset>')!r}")
    return out


def check_folder(out: str | Path, analysis: str, spec: str, numerics: str, dtype: str, seed: int,
                 params: dict[str, Any], fresh: bool = False, precision: Optional[str] = None) -> None:
    """The checks :class:`Run` makes on its folder, made before the model loads (the weight hash,
    which needs the weights, is checked by :class:`Run`).

    Raises:
        InterpError: when a live run holds ``out/analysis``, or (unless ``fresh``) it holds files
            that are not a run, or a run made with another model, numerics, dtype, precision policy
            (:func:`interp.loading.precision_label`; default: the dtype's own), seed or parameters.
    """
    folder = Path(out) / analysis
    for p in [folder, *folder.parents]:
        if p.exists() and not p.is_dir():
            raise InterpError(f"--out: {p} is a file, not a folder")
    if not folder.is_dir():
        return
    other = FolderLock(folder).holder()
    if other is not None:
        raise InterpError(f"{folder} is in use by another run: {FolderLock.describe(other)}; wait for it, or use "
                          f"another --out (remove {folder / FolderLock.NAME} only if that run is gone)")
    if fresh or not any(p.name != FolderLock.NAME for p in folder.iterdir()):
        return
    try:
        old = _identity(json.loads((folder / "manifest.json").read_text()))
    except (OSError, ValueError, AttributeError):
        raise InterpError(f"{folder} holds files that are not an interp run of {analysis} (no readable manifest.json); "
                          "use --fresh to replace them or choose another --out") from None
    new = dict(old, analysis=analysis, model=spec, numerics=numerics, dtype=dtype, precision=precision or dtype, seed=seed,
               params=_jsonable(params))
    if old != new:
        diff = _differences(old, new)
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise InterpError(f"{folder} holds a {analysis} run made with other settings ({shown}); "
                          "use --fresh to replace it or choose another --out")


class Run:
    """The output folder of one analysis on one model.

    The folder never mixes two runs: the run holds ``.lock`` while it writes; a folder holding a
    run made with another model, numerics, seed or parameters is refused unless ``fresh`` (which
    empties it first); tables, figures and the summary that the run did not write again are
    removed when it finishes; every file is written atomically; a run that fails before storing
    anything leaves no folder behind.

    Args:
        out: the parent output folder; the run writes ``out/analysis``.
        analysis: analysis name (``recall``, ``glitch``, ``rome``).
        model: the model handle (its :meth:`~interp.model.Model.describe` goes in the manifest);
            may be None for runs that only read stored data.
        params: the analysis parameters (part of every stage's resume key).
        seed: the seed (set for Python, NumPy and torch now).
        resume: reuse finished stages with the same key (default True).
        fresh: replace whatever the folder holds (default: ``not resume``).

    Raises:
        InterpError: when another live run holds the folder, when it holds a run made with other
            settings (and not ``fresh``), or when ``out`` cannot be a folder.
    """

    def __init__(
        self,
        out: str | Path,
        analysis: str,
        model: Any = None,
        params: Optional[dict[str, Any]] = None,
        seed: int = 0,
        resume: bool = True,
        fresh: Optional[bool] = None,
    ) -> None:
        self.dir = Path(out) / analysis
        self.analysis = analysis
        self.model = model
        self.params = dict(params or {})
        self.seed = seed
        self.resume = resume
        self.fresh = (not resume) if fresh is None else bool(fresh)
        self.closed = False
        self.t0 = time.perf_counter()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.stage_times: dict[str, dict[str, Any]] = {}
        self._summary: dict[str, Any] = {}
        self._figures: list[tuple[str, Any]] = []
        self._written: set[Path] = set()
        self._stored_stage = False
        self.notes: list[str] = []
        self._key_base = {
            "model": model.describe() if model is not None else None,
            "params": self.params,
            "seed": seed,
        }
        self._created = _make_folder(self.dir)
        self._lock = FolderLock(self.dir)
        try:
            self._lock.acquire()
            _HELD[str(self.dir.resolve())] = self
            if self._lock.note:
                self.note(self._lock.note)
                progress(f"[{analysis}] {self._lock.note}")
            self._claim()
            for sub in ("tables", "figures", "stages"):
                (self.dir / sub).mkdir(exist_ok=True)
            self._write_manifest(finished=False)
        except BaseException:
            self.close(failed=True)
            raise
        seed_everything(seed)

    # -------------------------------------------------------------- the folder
    def _claim(self) -> None:
        """Refuse a folder holding another run's results (unless fresh); clear what must go."""
        remove_tmp_files(self.dir)
        man_path = self.dir / "manifest.json"
        content = [p for p in self.dir.iterdir() if p.name != FolderLock.NAME]
        if self.fresh:
            for p in content:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            if content:
                self.note(f"--fresh: replaced the folder's earlier content ({len(content)} entries)")
            return
        if not content:
            return
        try:
            old = json.loads(man_path.read_text())
            if not isinstance(old, dict):
                raise ValueError
        except (OSError, ValueError):
            raise InterpError(f"{self.dir} holds files that are not an interp run of {self.analysis} "
                              "(no readable manifest.json); use --fresh to replace them or choose another --out") from None
        new = self._identity()
        if _identity(old) != new:
            diff = _differences(_identity(old), new)
            state = "finished" if old.get("finished") else "unfinished"
            shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise InterpError(f"{self.dir} holds a {state} {self.analysis} run made with other settings ({shown}); "
                              "use --fresh to replace it or choose another --out")
        legacy = sorted((self.dir / "stages").glob("*.pkl")) if (self.dir / "stages").is_dir() else []
        for p in legacy:
            p.unlink()
        if legacy:
            self.note(f"removed {len(legacy)} pickle stage file(s) of an older version unread; their stages are recomputed")

    def _identity(self) -> dict[str, Any]:
        return _identity({"analysis": self.analysis, "model": self._key_base["model"],
                          "numerics": getattr(self.model, "numerics", None), "seed": self.seed, "params": self.params})

    def close(self, failed: bool = False) -> None:
        """Release the folder. After a failure, a folder this run created and stored nothing in is removed."""
        if self.closed:
            return
        self.closed = True
        self._lock.release()
        if _HELD.get(str(self.dir.resolve())) is self:
            _HELD.pop(str(self.dir.resolve()), None)
        if failed and self._created is not None and not self._stored_stage:
            shutil.rmtree(self.dir, ignore_errors=True)
            for d in self.dir.parents:  # the parents this run created, when nothing else is in them
                if self._created not in (d, *d.parents):
                    break
                try:
                    d.rmdir()
                except OSError:
                    break

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(failed=exc_type is not None)

    # -------------------------------------------------------------- stages
    def _stage_key(self, name: str, extra: Any) -> str:
        blob = json.dumps(_jsonable({"base": self._key_base, "stage": name, "extra": extra}), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def stage(self, name: str, fn: Callable[[], Any], key: Any = None) -> Any:
        """Run ``fn`` once per (model, params, seed, ``key``); later calls load its stored result.

        The result is stored under ``stages/`` (JSON, safetensors, Parquet; never a pickle) as soon
        as it is computed, so an interrupted run resumes after its last finished stage. The stored
        key is compared before any stored file is parsed.
        """
        folder = self.dir / "stages"
        k = self._stage_key(name, key)
        if self.resume:
            got = load_stage(folder, name, k)
            if got is not None:
                value, head = got
                secs = float(head.get("seconds", 0.0))
                self.stage_times[name] = {"seconds": secs, "resumed": True}
                progress(f"[{self.analysis}] {name}: resumed (stored; computed in {secs:.1f}s)")
                return value
        progress(f"[{self.analysis}] {name}: computing")
        t = time.perf_counter()
        value = fn()
        secs = time.perf_counter() - t
        self._save(name, k, value, secs)
        progress(f"[{self.analysis}] {name}: done in {secs:.1f}s")
        self._write_manifest(finished=False)
        return value

    def _save(self, name: str, k: str, value: Any, secs: float, by: str = "") -> None:
        try:
            dropped = save_stage(self.dir / "stages", name, k, value, secs)
        except Unstorable as e:
            self.note(f"stage {name}: not stored (it holds {e}, which cannot be stored safely); recomputed on a rerun")
            dropped = []
        else:
            self._stored_stage = True
        if dropped:
            self.note(f"stage {name}: not stored, restored as None on resume: {', '.join(dropped)}")
        self.stage_times[name] = {"seconds": secs, "resumed": False, **({"by": by} if by else {})}

    def put(self, name: str, value: Any, key: Any = None, seconds: float = 0.0, by: str = "") -> Any:
        """Store ``value``, computed elsewhere (by the ``torchrun`` ranks, say) in ``seconds``, as stage
        ``name`` under ``key``, exactly as :meth:`stage` would have stored it; returns ``value``."""
        self._save(name, self._stage_key(name, key), value, seconds, by)
        return value

    def stored(self, name: str, key: Any = None) -> bool:
        """Whether :meth:`stage` ``name`` (with ``key``) would resume from a stored result (its header
        only is read: a torn stage still counts, and :meth:`stage` recomputes it)."""
        head = read_stage_header(self.dir / "stages", name) if self.resume else None
        return head is not None and head.get("key") == self._stage_key(name, key)

    def timed(self, name: str) -> "_Timer":
        """Context manager that records the wall time of an unstored step."""
        return _Timer(self, name)

    # -------------------------------------------------------------- outputs
    def table(self, name: str, df: pd.DataFrame) -> Path:
        """Write ``tables/NAME.csv`` and ``tables/NAME.parquet``."""
        if not isinstance(df, pd.DataFrame):
            raise InterpError(f"table {name!r} must be a pandas DataFrame")
        base = self.dir / "tables" / name
        csv, parquet = base.with_suffix(".csv"), base.with_suffix(".parquet")
        atomic_write(csv, lambda t: df.to_csv(t, index=False))
        try:
            atomic_write(parquet, lambda t: df.to_parquet(t, index=False))
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - mixed object columns: stringify them
            strs = df.astype({c: str for c in df.columns if df[c].dtype == object})
            atomic_write(parquet, lambda t: strs.to_parquet(t, index=False))
            self.notes.append(f"table {name}: object columns written to parquet as strings ({type(e).__name__})")
        self._written.update({csv, parquet})
        return csv

    def figure(self, name: str, fig: Any) -> Path:
        """Write ``figures/NAME.html`` and ``figures/NAME.json`` now; the PNG is rendered in :meth:`finish`.

        The HTML loads plotly.js from ``OUT/plotly.min.js`` (one copy shared by every figure and the
        report page, written here when missing), so it works offline without embedding 4.8 MB each.
        """
        path = write_figure(fig, self.dir / "figures", name, write_plotlyjs(self.dir.parent))
        self._written.update({path, path.with_suffix(".json")})
        self._figures.append((name, fig))
        return path

    def summary(self, **values: Any) -> None:
        """Add headline numbers to ``summary.json``."""
        self._summary.update(values)
        path = self.dir / "summary.json"
        write_json(path, self._summary)
        self._written.add(path)

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
            "command": _command(),
            "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": _cpu(),
                     "torch_threads": torch.get_num_threads(), "ranks": _ranks()},
            "stages": self.stage_times,
            "wall_seconds": time.perf_counter() - self.t0,
            "figures": [n for n, _ in self._figures],
            "tables": sorted(p.stem for p in self._written if p.parent.name == "tables" and p.suffix == ".csv"),
            "notes": self.notes,
        }
        write_json(self.dir / "manifest.json", manifest)

    def _prune(self) -> list[Path]:
        """Remove tables, figures and a summary that this run did not write (an earlier run's)."""
        gone = []
        for p in [*(self.dir / "tables").glob("*"), *(self.dir / "figures").glob("*"), self.dir / "summary.json"]:
            if p.is_file() and p not in self._written:
                p.unlink()
                gone.append(p)
        return gone

    def finish(self, png: bool = True) -> Path:
        """Render PNGs (one browser session for all figures), remove stale outputs, write the final
        manifest and release the folder."""
        try:
            if png and self._figures:
                with self.timed("render_png"):
                    items = [(f, self.dir / "figures" / f"{n}.png") for n, f in self._figures]
                    render_pngs(items)
                    self._written.update(p for _, p in items)
            gone = self._prune()
            if gone:
                self.note(f"removed {len(gone)} output(s) of an earlier run not written again: "
                          + ", ".join(p.relative_to(self.dir).as_posix() for p in gone[:8]))
            self._write_manifest(finished=True)
        except BaseException:
            self.close(failed=True)
            raise
        self.close()
        return self.dir


def _make_folder(folder: Path) -> Optional[Path]:
    """Create ``folder`` (and parents). Returns None when it existed, else the topmost folder created.

    Raises:
        InterpError: when a path on the way is a file or the folder cannot be created.
    """
    if folder.is_dir():
        return None
    for p in [folder, *folder.parents]:
        if p.exists() and not p.is_dir():
            raise InterpError(f"--out: {p} is a file, not a folder")
    top = folder
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    try:
        folder.mkdir(parents=True)
    except OSError as e:
        raise InterpError(f"--out: cannot create {folder}: {e.strerror or e}") from None
    return top


class _Timer:
    def __init__(self, run: Run, name: str) -> None:
        self.run, self.name = run, name

    def __enter__(self) -> "_Timer":
        self.t = time.perf_counter()
        progress(f"[{self.run.analysis}] {self.name}: running")
        return self

    def __exit__(self, *exc: Any) -> None:
        secs = time.perf_counter() - self.t
        self.run.stage_times[self.name] = {"seconds": secs, "resumed": False}
        if exc[0] is None:
            progress(f"[{self.run.analysis}] {self.name}: done in {secs:.1f}s")


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
        atomic_write(path, lambda t: t.write_text(js, encoding="utf-8"))
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
    spec = fig.to_json()
    atomic_write(folder / f"{name}.json", lambda t: t.write_text(spec, encoding="utf-8"))
    return atomic_write(folder / f"{name}.html", lambda t: t.write_text(html, encoding="utf-8"))


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
    tmps = [tmp_path(p) for p in paths]
    try:
        pio.write_images(figs, tmps, scale=1, width=widths, height=heights)
        for t, p in zip(tmps, paths):
            os.replace(t, p)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001
        raise InterpError(
            f"PNG export failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); kaleido needs "
            "Chrome or Chromium: `apt-get install chromium` (or `plotly_get_chrome`)"
        ) from e
    finally:
        for t in tmps:
            t.unlink(missing_ok=True)
