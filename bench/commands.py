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


def train_style_sets(description: str, extra=None):
    """``(args, model, [zero-shot, 3-shot activations], frequency direction)`` for the mitigation
    benches: the packaged facts' prompts (``--facts`` per relation, ``--templates`` lead-ins) with
    the final layer captured, as the mitigation choice reads them; ``extra(ap)`` adds arguments."""
    import argparse

    import torch

    import interp
    from interp.frequency import token_frequency
    from interp.recall.activations import collect_activations
    from interp.recall.facts import build_prompts, load_relations
    from interp.recall.mitigation import frequency_direction

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--facts", type=int, default=24, help="facts per relation")
    ap.add_argument("--templates", type=int, default=3, help="lead-in templates per fact")
    if extra:
        extra(ap)
    args = ap.parse_args()
    model = interp.load_model(args.model)
    rels = load_relations()
    with torch.no_grad():
        sets = [collect_activations(model, build_prompts(model, rels, shots=s, templates=list(range(args.templates)),
                                                         max_facts=args.facts), layers=[model.n_layers - 1]) for s in (0, 3)]
        d = frequency_direction(model, token_frequency(model, "wikipedia"))
    return args, model, sets, d
