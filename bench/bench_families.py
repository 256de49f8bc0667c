"""First load vs cached load of each real model; prints ratios measured in this one run.

The first load of a registry model joins and verifies its GGUF parts (Gemma, Qwen), dequantizes the
GGUF with ``transformers`` and writes safetensors to a fresh cache folder; the second load reads the
safetensors. Target: cached <= 0.25x first, for every model.

Run: python bench/bench_families.py [--models smollm2-135m,gemma-3-270m,qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

import interp
from interp import loading
from interp.errors import InterpError


def first_and_cached(name: str) -> tuple[float, float]:
    """Seconds of a load into an empty cache, then of a load from that cache."""
    with tempfile.TemporaryDirectory() as d:
        old = os.environ.get("INTERP_CACHE")
        os.environ["INTERP_CACHE"] = d
        try:
            t = time.perf_counter()
            interp.load_model(name, device="cpu")
            first = time.perf_counter() - t
            t = time.perf_counter()
            interp.load_model(name, device="cpu")
            cached = time.perf_counter() - t
        finally:
            if old is None:
                os.environ.pop("INTERP_CACHE")
            else:
                os.environ["INTERP_CACHE"] = old
    return first, cached


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m,gemma-3-270m,qwen2.5-coder-0.5b")
    args = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    worst = 0.0
    for name in args.models.split(","):
        try:
            loading.resolve(name)
        except InterpError as e:
            print(f"{name}: skipped ({e})")
            continue
        first, cached = first_and_cached(name)
        worst = max(worst, cached / first)
        print(f"{name}: first load {first:.1f}s (join/verify + dequantize + save), cached {cached:.1f}s "
              f"-> {cached / first:.3f}x (target <= 0.25x)")
    print(f"worst cached/first: {worst:.3f}x")


if __name__ == "__main__":
    main()
