"""Safe storage of finished stages and atomic file writes.

Nothing here is ever unpickled. A stored stage is three kinds of file:

    stages/NAME.json          the stage's key, the file list with SHA-256 digests, and the value's
                              structure (dicts, lists, tuples, dataclasses, numbers, strings)
    stages/NAME.safetensors   every tensor and numeric NumPy array of the value
    stages/NAME.K.parquet     every pandas table of the value

:func:`load_stage` reads the JSON (which cannot run code), compares the key, checks the digest of
every companion file, and only then parses them. Dataclasses are rebuilt only when they belong to
this package (``interp.*``). A dataclass field whose default is ``None`` and whose value cannot be
stored safely (a fitted scikit-learn object, say) is stored as ``None`` and named in ``dropped``;
any other such value makes the stage unstorable (:class:`Unstorable`: it is recomputed each run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import torch

FORMAT = "interp-stage/1"
TMP_MARK = ".tmp-"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def tmp_path(path: Path) -> Path:
    """The temporary sibling a write of ``path`` goes to first (same folder, same suffix)."""
    return path.parent / f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}"


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it over ``path``.

    On any failure (``OSError`` for a full disk included) the temporary file is removed and the
    error re-raised, so ``path`` is either the old file or the complete new one.
    """
    path = Path(path)
    tmp = tmp_path(path)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # some writers create 0600 files
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename in (str(tmp), tmp):
            e.filename = str(path)
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """Write a text file atomically."""
    return atomic_write(path, lambda t: t.write_text(text))


def remove_tmp_files(folder: Path) -> list[Path]:
    """Remove temporary files a crashed write left under ``folder``; returns them."""
    gone = []
    if folder.is_dir():
        for p in folder.rglob(f".*{TMP_MARK}*"):
            if p.is_file():
                p.unlink(missing_ok=True)
                gone.append(p)
    return gone


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ encoding
class Unstorable(TypeError):
    """A value holds an object that cannot be stored safely where ``None`` cannot stand in for it."""


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.frames: list[pd.DataFrame] = []
        self.dropped: list[str] = []

    def tensor(self, t: torch.Tensor) -> str:
        name = f"t{len(self.tensors)}"
        self.tensors[name] = t.detach().to("cpu").contiguous().clone()
        return name

    def enc(self, x: Any, where: str = "value", droppable: bool = False) -> Any:
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return x
        if isinstance(x, np.bool_):
            return bool(x)
        if isinstance(x, np.integer):
            return int(x)
        if isinstance(x, np.floating):
            return float(x)
        if isinstance(x, list):
            return [self.enc(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, tuple) and not hasattr(x, "_fields"):
            return {"__tuple__": [self.enc(v, f"{where}[{i}]") for i, v in enumerate(x)]}
        if isinstance(x, (set, frozenset)):
            items = sorted(x, key=repr)
            return {"__set__": [self.enc(v, where) for v in items], "frozen": isinstance(x, frozenset)}
        if isinstance(x, dict):
            return {"__dict__": [[self.enc(k, where), self.enc(v, f"{where}[{k!r}]")] for k, v in x.items()]}
        if isinstance(x, torch.Tensor):
            return {"__tensor__": self.tensor(x)}
        if isinstance(x, np.ndarray):
            if x.dtype.kind in "biuf" and x.dtype.itemsize <= 8:
                return {"__ndarray__": self.tensor(torch.from_numpy(np.ascontiguousarray(x)))}
            return {"__ndarray_list__": self.enc(x.tolist(), where), "dtype": str(x.dtype)}
        if isinstance(x, pd.DataFrame):
            return self.frame(x, where)
        if isinstance(x, pd.Series):
            return {"__series__": self.frame(x.to_frame("value"), where), "name": self.enc(x.name, where)}
        if isinstance(x, Path):
            return {"__path__": str(x)}
        if dataclasses.is_dataclass(x) and not isinstance(x, type) and type(x).__module__.startswith("interp."):
            cls = type(x)
            return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
                    "fields": {f.name: self.enc(getattr(x, f.name), f"{where}.{f.name}", droppable=f.default is None)
                               for f in dataclasses.fields(x)}}
        what = f"{where} ({type(x).__module__}.{type(x).__qualname__})"
        if not droppable:
            raise Unstorable(what)
        self.dropped.append(what)
        return {"__dropped__": type(x).__qualname__}

    def frame(self, df: pd.DataFrame, where: str) -> dict:
        if all(isinstance(c, str) for c in df.columns) and df.columns.is_unique:
            try:
                import io

                buf = io.BytesIO()
                df.to_parquet(buf, index=True)
                buf.seek(0)
                back = pd.read_parquet(buf)
                if back.equals(df) and list(back.columns) == list(df.columns) and back.index.equals(df.index):
                    self.frames.append(df)
                    return {"__frame__": len(self.frames) - 1}
            except Exception:  # noqa: BLE001 - not representable in Parquet: stored column by column
                pass
        return {"__frame_cols__": {
            "columns": self.enc(list(df.columns), where),
            "data": [self.enc(df[c].tolist() if df.columns.is_unique else df.iloc[:, i].tolist(), f"{where}[{c!r}]")
                     for i, c in enumerate(df.columns)],
            "dtypes": [str(t) for t in df.dtypes],
            "index": self.enc(list(df.index), where),
            "index_name": self.enc(df.index.name, where),
        }}


class _Decoder:
    def __init__(self, tensors: dict[str, torch.Tensor], frames: list[pd.DataFrame]) -> None:
        self.tensors, self.frames = tensors, frames

    def dec(self, x: Any) -> Any:
        if isinstance(x, list):
            return [self.dec(v) for v in x]
        if not isinstance(x, dict):
            return x
        if "__tuple__" in x:
            return tuple(self.dec(v) for v in x["__tuple__"])
        if "__set__" in x:
            items = [self.dec(v) for v in x["__set__"]]
            return frozenset(items) if x.get("frozen") else set(items)
        if "__dict__" in x:
            return {self.dec(k): self.dec(v) for k, v in x["__dict__"]}
        if "__tensor__" in x:
            return self.tensors[x["__tensor__"]]
        if "__ndarray__" in x:
            return self.tensors[x["__ndarray__"]].numpy()
        if "__ndarray_list__" in x:
            return np.array(self.dec(x["__ndarray_list__"]), dtype=x["dtype"])
        if "__frame__" in x:
            return self.frames[int(x["__frame__"])]
        if "__frame_cols__" in x:
            f = x["__frame_cols__"]
            cols = []
            for values, dtype in zip(f["data"], f["dtypes"]):
                col = pd.Series(self.dec(values), dtype=object)
                try:
                    col = col.astype(dtype)
                except (TypeError, ValueError):
                    pass
                cols.append(col.reset_index(drop=True))
            index = pd.Index(self.dec(f["index"]), name=self.dec(f["index_name"]))
            df = pd.concat(cols, axis=1) if cols else pd.DataFrame(index=range(len(index)))
            df.columns = pd.Index(self.dec(f["columns"]), dtype=object) if cols else df.columns
            df.index = index
            return df
        if "__series__" in x:
            s = self.dec(x["__series__"])["value"]
            s.name = self.dec(x["name"])
            return s
        if "__path__" in x:
            return Path(x["__path__"])
        if "__dataclass__" in x:
            return self._dataclass(x["__dataclass__"], {k: self.dec(v) for k, v in x["fields"].items()})
        if "__dropped__" in x:
            return None
        raise ValueError(f"unknown stored node {sorted(x)[:3]}")

    @staticmethod
    def _dataclass(name: str, fields: dict[str, Any]) -> Any:
        module, _, qual = name.partition(":")
        if not (module == "interp" or module.startswith("interp.")):
            raise ValueError(f"stored class {name!r} is outside the interp package")
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
        if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
            raise ValueError(f"stored class {name!r} is not a dataclass")
        known = {f.name for f in dataclasses.fields(obj)}
        if set(fields) != known:
            raise ValueError(f"stored {name} fields differ from the class's")
        inst = obj.__new__(obj)
        for k, v in fields.items():
            object.__setattr__(inst, k, v)
        return inst


# ------------------------------------------------------------------ stages
def stage_files(folder: Path, name: str) -> list[Path]:
    """Every file a stored stage ``name`` may own in ``folder`` (existing or not)."""
    return [folder / f"{name}.json", folder / f"{name}.safetensors", *sorted(folder.glob(f"{name}.*.parquet"))]


def save_stage(folder: Path, name: str, key: str, value: Any, seconds: float) -> list[str]:
    """Store ``value`` as stage ``name`` (JSON + safetensors + Parquet), each file atomically.

    The JSON, which names the others with their digests, is written last, so a stage whose JSON
    exists is complete.

    Returns:
        Descriptions of the parts of ``value`` that could not be stored (restored as ``None``).

    Raises:
        Unstorable: when part of ``value`` cannot be stored and ``None`` cannot stand in for it
            (nothing is written then).
    """
    from safetensors.torch import save_file

    enc = _Encoder()
    tree = enc.enc(value)
    (folder / f"{name}.json").unlink(missing_ok=True)
    files: dict[str, str] = {}
    if enc.tensors:
        path = atomic_write(folder / f"{name}.safetensors", lambda t: save_file(enc.tensors, str(t)))
        files[path.name] = sha256_file(path)
    for i, df in enumerate(enc.frames):
        path = atomic_write(folder / f"{name}.{i}.parquet", lambda t, df=df: df.to_parquet(t, index=True))
        files[path.name] = sha256_file(path)
    blob = {"format": FORMAT, "key": key, "seconds": seconds, "files": files, "n_frames": len(enc.frames),
            "dropped": enc.dropped, "value": tree}
    write_text(folder / f"{name}.json", json.dumps(blob))
    return enc.dropped


def read_stage_header(folder: Path, name: str) -> Optional[dict[str, Any]]:
    """The JSON header of a stored stage, or None when absent or unreadable (never parses anything else)."""
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    try:
        blob = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return blob if isinstance(blob, dict) and blob.get("format") == FORMAT else None


def load_stage(folder: Path, name: str, key: str) -> Optional[tuple[Any, dict[str, Any]]]:
    """The stored value of stage ``name`` when its key is ``key`` and every file is intact.

    The key and the companion files' digests are checked before any of them is parsed.

    Returns:
        ``(value, header)``, or None when there is no matching, intact stage.
    """
    from safetensors.torch import load_file

    head = read_stage_header(folder, name)
    if head is None or head.get("key") != key:
        return None
    files = head.get("files") or {}
    for fname, digest in files.items():
        p = folder / fname
        if Path(fname).name != fname or not fname.startswith(f"{name}.") or not p.is_file() or sha256_file(p) != digest:
            return None
    try:
        tensors = load_file(str(folder / f"{name}.safetensors")) if f"{name}.safetensors" in files else {}
        frames = [pd.read_parquet(folder / f"{name}.{i}.parquet") for i in range(int(head.get("n_frames", 0)))]
        return _Decoder(tensors, frames).dec(head["value"]), head
    except Exception:  # noqa: BLE001 - a stage that does not decode is recomputed
        return None
