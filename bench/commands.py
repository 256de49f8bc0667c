"""What the benchmarks share: not run itself, imported by the scripts beside it (``python
bench/bench_scale.py``, ``python bench/bench_scoring.py``, ...), whose folder is on ``sys.path``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

TORCHRUN_2 = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def one_thread_env() -> dict[str, str]:
    """This environment with one thread per process, no progress output, no inherited torchrun
    world, and this checkout first on the import path."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", INTERP_PROGRESS="0")
    env.pop("WORLD_SIZE", None)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = f"{root}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def best_of(fn, repeats: int) -> float:
    """The shortest wall time of ``repeats`` calls of ``fn`` (a first call's one-off costs drop out)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def timed_run(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one command; exits with its stderr's tail when it fails."""
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return time.perf_counter() - t


def timed(fn, repeats=2):
    """``(best wall seconds of repeats calls of fn, fn's last result)``."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out
