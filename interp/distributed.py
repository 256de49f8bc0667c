"""Several processes, one result: work split across ranks with ``torch.distributed``.

Launch any sharded command with ``torchrun`` (or ``accelerate launch``), e.g.::

    torchrun --nproc_per_node 2 -m interp.glitch.scan --model smollm2-135m --work scan/

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init` joins the
process group from them (gloo on CPU, NCCL on GPU) and a plain ``python`` run is rank 0 of 1, so
the same command runs one process or many. Items are split in fixed chunks (rank ``r`` takes chunks
``r, r + n, ...``, or, for chunks of uneven cost, the next one no rank has claimed); each rank writes
its chunks as stage files, so a restarted run redoes only the
missing ones, and rank 0 gathers them after a barrier and writes the result. Because a chunk is
processed the same way whichever rank runs it, the result equals a one-process run.
"""

from __future__ import annotations

import atexit
import datetime
import importlib
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from interp.errors import InterpError


@dataclass(frozen=True)
class World:
    """This process's place among the ranks."""

    rank: int = 0
    size: int = 1
    backend: Optional[str] = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes shared results (rank 0)."""
        return self.rank == 0

    def owns(self, chunk_index: int) -> bool:
        """Whether this rank processes chunk ``chunk_index`` (chunks are dealt round-robin)."""
        return chunk_index % self.size == self.rank

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()


def init(device: str = "cpu") -> World:
    """Join the process group that ``torchrun`` describes in the environment, or run alone.

    Args:
        device: ``cpu`` uses gloo; a CUDA device uses NCCL and selects ``cuda:LOCAL_RANK``.

    Returns:
        The :class:`World` of this process.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank = int(os.environ.get("RANK", "0"))
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    world = World(rank=rank, size=size, backend=backend)
    if not torch.distributed.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # ranks other than 0 wait in a broadcast while rank 0 runs an analysis's unsharded steps: allow
        # hours, not the default 30 minutes (INTERP_DIST_TIMEOUT, seconds)
        timeout = datetime.timedelta(seconds=float(os.environ.get("INTERP_DIST_TIMEOUT", 24 * 3600)))
        torch.distributed.init_process_group(backend=backend, timeout=timeout)
        _leave_at_exit(world)
    return world


FINISH_TIMEOUT_S = 120.0

_FAILED = False  # an exception ended this process (set by the excepthook below)


def _leave_at_exit(world: World) -> None:
    """Make a script that ends without :func:`finish` still leave the group only once every rank is
    done (gloo may otherwise abort a rank at exit). A rank that an uncaught exception ends leaves at
    once instead: its peers are stopped by ``torchrun``, and waiting for them would only delay that."""
    previous = sys.excepthook

    def note_failure(*exc: Any) -> None:
        global _FAILED
        _FAILED = True
        previous(*exc)

    sys.excepthook = note_failure
    atexit.register(lambda: None if _FAILED else finish(world))


def finish(world: World) -> None:
    """Leave the process group once every rank is past its last collective.

    Without the closing barrier a rank may tear its gloo connections down while a peer is still reading
    the last broadcast, and gloo then aborts that peer ("terminate called without an active exception").
    A peer that never arrives (it failed) costs ``FINISH_TIMEOUT_S`` seconds and a warning, not a hang.
    :func:`init` also registers this to run at exit, so a script that never calls it leaves cleanly
    too; once the group is left, calling it again does nothing.
    """
    if world.size > 1 and torch.distributed.is_initialized():
        try:
            if world.backend == "gloo":  # gloo's own barrier would wait out the group's timeout (hours)
                torch.distributed.monitored_barrier(timeout=datetime.timedelta(seconds=FINISH_TIMEOUT_S))
            else:
                torch.distributed.barrier()
        except RuntimeError as e:
            warnings.warn(f"rank {world.rank}: not every rank reached the end ({e}); leaving the group anyway")
        torch.distributed.destroy_process_group()


# ------------------------------------------------------------------ sharded passes inside `interp run`

_WORLD = World()

# the passes a rank may be asked to run: "module:function", each taking (model, **kwargs)
TASKS = ("interp.recall.activations:collect_activations", "interp.rome.layer_stats:layer_stats",
         "interp.glitch.detect:score_tokens", "interp.rome.pipeline:shared_edits",
         "interp.rome.compute_u:compute_keys")


def current() -> World:
    """The world :func:`join` set for this process (rank 0 of 1 unless running under ``torchrun``)."""
    return _WORLD


def join(device: str = "cpu") -> World:
    """:func:`init`, remembered as this process's :func:`current` world."""
    global _WORLD
    _WORLD = init(device)
    return _WORLD


def dispatch(task: str, **kwargs: Any) -> None:
    """Rank 0: ask every other rank to run ``task(model, **kwargs)`` with it (a no-op alone)."""
    w = current()
    if w.size <= 1 or not w.is_main:
        return
    if task not in TASKS:
        raise InterpError(f"unknown sharded task {task!r}")
    torch.distributed.broadcast_object_list([(task, kwargs)], src=0)


def release() -> None:
    """Rank 0: tell the waiting ranks there is no more work (a no-op alone)."""
    w = current()
    if w.size > 1 and w.is_main and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list([None], src=0)


def serve(model: Any) -> int:
    """Ranks other than 0: run the passes rank 0 dispatches until it releases them.

    Returns:
        How many passes this rank took part in.
    """
    n = 0
    while True:
        box: list[Any] = [None]
        torch.distributed.broadcast_object_list(box, src=0)
        if box[0] is None:
            return n
        task, kwargs = box[0]
        if task not in TASKS:
            raise InterpError(f"rank 0 sent an unknown task {task!r}")
        mod, fn = task.split(":")
        getattr(importlib.import_module(mod), fn)(model, **kwargs)
        n += 1


def _key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def chunk_ready(path: Path, key: dict) -> bool:
    """Whether ``path`` holds a finished chunk stored under ``key`` (reads the header only)."""
    from safetensors import safe_open

    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("key") == _key_text(key)
    except Exception:  # noqa: BLE001 - a torn or foreign file is recomputed
        return False


def save_chunk(path: Path, tensors: dict[str, torch.Tensor], key: dict) -> None:
    """Store one chunk's tensors as safetensors with ``key`` in its header, atomically."""
    from safetensors.torch import save_file

    from interp.store import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda t: save_file(tensors, str(t), metadata={"key": _key_text(key)}))


def load_chunk(path: Path, key: dict) -> dict[str, torch.Tensor]:
    """A chunk :func:`save_chunk` stored under ``key`` (the key is checked before the tensors are read).

    Raises:
        InterpError: when it is missing or was stored under another key.
    """
    from safetensors.torch import load_file

    if not chunk_ready(path, key):
        raise InterpError(f"shard file {path} is missing or belongs to another run")
    return load_file(str(path))


def _chunk_name(k: int) -> str:
    return f"chunk_{k:05d}"


def _chunk_stored(folder: Path, k: int, key: dict, values: str) -> bool:
    from interp.store import read_stage_header

    if values == "tensors":
        return chunk_ready(folder / f"{_chunk_name(k)}.safetensors", key)
    head = read_stage_header(folder, _chunk_name(k))
    return head is not None and head.get("key") == _key_text(key)


def _store_chunk(folder: Path, k: int, value: Any, key: dict, values: str, seconds: float) -> None:
    from interp.store import save_stage

    if values == "tensors":
        save_chunk(folder / f"{_chunk_name(k)}.safetensors", value, key)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        save_stage(folder, _chunk_name(k), _key_text(key), value, seconds)


def _load_stored_chunk(folder: Path, k: int, key: dict, values: str) -> Any:
    from interp.store import load_stage

    if values == "tensors":
        return load_chunk(folder / f"{_chunk_name(k)}.safetensors", key)
    got = load_stage(folder, _chunk_name(k), _key_text(key))
    if got is None:
        raise InterpError(f"shard file {folder / _chunk_name(k)}.json is missing, torn or belongs to another run")
    return got[0]


def _claim(claims: Path, k: int) -> bool:
    """Take chunk ``k`` for this rank: True for the one rank whose exclusive create succeeds."""
    try:
        os.close(os.open(claims / f"{k:05d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def map_chunks(n_chunks: int, compute: Callable[[int], Any], folder: Optional[Path],
               key: dict, desc: str = "chunks", values: str = "tensors", schedule: str = "static") -> Optional[list[Any]]:
    """Compute chunks ``0 .. n_chunks-1`` shared among the ranks; rank 0 gets all of them in order.

    Each rank computes its chunks and stores each in ``folder`` as it finishes (a restarted pass
    skips the stored ones); after a barrier rank 0 reads them all and removes the folder. With no
    ``folder`` the pass is not shared: this process computes every chunk in memory.

    ``schedule="static"`` deals the chunks round-robin (:meth:`World.owns`): right when they cost
    the same. ``schedule="dynamic"`` lets each rank take the lowest-numbered chunk that no rank has
    claimed yet (an exclusive file create under ``folder/claims``, cleared by rank 0 before the
    pass), so the ranks finish within about one chunk of each other however uneven the chunks are;
    put the costly ones first. Both need ``folder`` on a file system every rank sees, as the
    gathering already does.

    Args:
        n_chunks: how many chunks.
        compute: chunk index -> its value (computed the same way whichever rank runs it).
        folder: where the chunk files go (needed with several ranks).
        key: what the chunks are of (stored in every file and checked when read back).
        desc: progress bar label (shown for more than one chunk unless ``INTERP_PROGRESS=0``).
        values: ``tensors``: each chunk is a dict of tensors, stored as one safetensors file;
            ``stage``: any value :mod:`interp.store` can store (rows of numbers and strings, say),
            stored as a stage (JSON with safetensors/Parquet companions; never a pickle).

    Returns:
        The chunks in order on rank 0; None on the other ranks.
    """
    from interp.progress import track

    if values not in ("tensors", "stage"):
        raise InterpError(f"map_chunks: values must be 'tensors' or 'stage', got {values!r}")
    if schedule not in ("static", "dynamic"):
        raise InterpError(f"map_chunks: schedule must be 'static' or 'dynamic', got {schedule!r}")
    w = current() if folder is not None else World()  # no folder: not shared, this process does it all
    dynamic = schedule == "dynamic" and w.size > 1
    # dynamic: every rank walks the whole queue (its bar shows the queue's progress) and takes what is unclaimed
    mine = list(range(n_chunks)) if dynamic else [k for k in range(n_chunks) if w.owns(k)]
    label = desc if w.size == 1 else f"{desc} [rank {w.rank}/{w.size}{', shared queue' if dynamic else ''}]"
    bar = track(mine, desc=label, unit="chunk", leave=False, disable=len(mine) < 2)
    if folder is None:
        return [compute(k) for k in bar]
    folder = Path(folder)
    claims = folder / "claims"
    try:
        if dynamic:
            if w.is_main:  # claims of an interrupted attempt would hold their chunks back
                shutil.rmtree(claims, ignore_errors=True)
                claims.mkdir(parents=True, exist_ok=True)
            w.barrier()
        for k in bar:
            if _chunk_stored(folder, k, {**key, "chunk": k}, values) or (dynamic and not _claim(claims, k)):
                continue
            t = time.perf_counter()
            value = compute(k)
            _store_chunk(folder, k, value, {**key, "chunk": k}, values, time.perf_counter() - t)
    finally:  # a rank that fails still meets the others here, so none waits for it forever
        w.barrier()
    if not w.is_main:
        return None
    out = [_load_stored_chunk(folder, k, {**key, "chunk": k}, values) for k in range(n_chunks)]
    shutil.rmtree(claims, ignore_errors=True)
    for f in folder.glob("chunk_*"):
        f.unlink()
    try:
        folder.rmdir()
    except OSError:
        pass
    return out
