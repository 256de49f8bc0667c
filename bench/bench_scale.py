"""Vocabulary scan on one process vs two torch.distributed ranks (gloo, one thread each).

Runs the repeat-oracle scan (``interp.glitch.scan``) over the first ``--n`` token ids of a model,
once as a plain process with one thread and once under ``torchrun --nproc_per_node 2`` with one
thread per rank (ranks share the chunks; rank 0 writes the ground truth), compares the labels, and
prints as its last line ``speedup: X.XXx (labels identical: yes|no)``. Times are whole commands
(model loading included). Target on a 2-core machine: >= 1.7x with identical labels.

Run: python bench/bench_scale.py [--model smollm2-135m] [--n 2048]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd


def scan(prefix: list[str], model: str, n: int, work: Path, out: Path, env: dict[str, str]) -> float:
    """Wall seconds of one scan command."""
    from commands import timed_run  # this folder is on sys.path when run as a script

    return timed_run([*prefix, "-m", "interp.glitch.scan", "--model", model, "--work", str(work), "--out", str(out),
                      "--limit", str(n), "--chunk-size", "128"], env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=2048, help="token ids to scan")
    args = ap.parse_args()
    from commands import TORCHRUN_2, one_thread_env

    env = one_thread_env()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        one = scan([sys.executable], args.model, args.n, d / "w1", d / "o1", env)
        two = scan(TORCHRUN_2, args.model, args.n, d / "w2", d / "o2", env)
        a = pd.read_csv(next((d / "o1").glob("*.csv.gz")), keep_default_na=False)
        b = pd.read_csv(next((d / "o2").glob("*.csv.gz")), keep_default_na=False)
    same = len(a) == len(b) == args.n and a.equals(b)
    glitch = int((a.cls == "glitch").sum())
    print(f"{args.model}, {args.n} token ids ({glitch} glitch): 1 process x 1 thread {one:.1f}s, "
          f"2 gloo ranks x 1 thread {two:.1f}s (model loading included)")
    print(f"speedup: {one / two:.2f}x (labels identical: {'yes' if same else 'no'})")


if __name__ == "__main__":
    main()
