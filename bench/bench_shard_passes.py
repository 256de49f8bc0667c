"""The two sharded passes besides the vocabulary scan, one process vs two gloo ranks (one thread each).

1. ROME's key second moment (``python -m interp.rome.layer_stats``) over ``--tokens`` Wikipedia
   tokens at the model's ROME layer: wall time of each command, and whether C agrees.
2. Recall's activation pass inside ``interp run recall --quick``: the ``activations`` stage's
   seconds from each run's manifest, and whether every table agrees.

Prints as its last line ``speedup: stats X.XXx, recall activations Y.YYx (results identical: yes|no)``.

Run: python bench/bench_shard_passes.py [--model smollm2-135m] [--tokens 32768]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=32768, help="tokens in the key second moment")
    a = ap.parse_args()
    from commands import TORCHRUN_2, one_thread_env, timed_run  # this folder is on sys.path when run as a script

    env = one_thread_env()
    prefixes = {1: [sys.executable], 2: TORCHRUN_2}
    recall_sets = ['relations=["country_capital","city_country","element_symbol"]', "max_facts=48", "templates=[0,1,2,3]"]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        stats_s, recall_s, mom2, tables = {}, {}, {}, {}
        for n, pre in prefixes.items():
            e = {**env, "INTERP_CACHE": str(d / f"cache{n}")}
            stats_s[n] = timed_run([*pre, "-m", "interp.rome.layer_stats", "--model", a.model, "--tokens", str(a.tokens)], e)
            mom2[n] = load_file(str(next((d / f"cache{n}" / "stats").glob("*.safetensors"))))["mom2"]
            out = d / f"recall{n}"
            timed_run([*pre, "-m", "interp.cli", "run", "recall", "--model", a.model, "--quick", "--no-png", "--out", str(out),
                 *[x for s in recall_sets for x in ("--set", s)]], e)
            recall_s[n] = json.loads((out / "recall" / "manifest.json").read_text())["stages"]["activations"]["seconds"]
            tables[n] = {f.name: pd.read_csv(f) for f in sorted((out / "recall" / "tables").glob("*.csv"))}
    c_diff = float((mom2[1] - mom2[2]).abs().max() / mom2[1].abs().max())
    same_tables = tables[1].keys() == tables[2].keys() and all(
        tables[1][k].drop(columns=[c for c in tables[1][k] if c.startswith("seconds")]).equals(
            tables[2][k].drop(columns=[c for c in tables[2][k] if c.startswith("seconds")])) for k in tables[1])
    print(f"{a.model}: key second moment over {a.tokens} tokens: 1 process {stats_s[1]:.1f}s, 2 ranks {stats_s[2]:.1f}s "
          f"(commands, model loading included); max relative difference of C {c_diff:.1e}")
    print(f"{a.model}: recall activation pass (quick, 3 relations x 48 facts x 4 lead-ins): 1 process {recall_s[1]:.1f}s, "
          f"2 ranks {recall_s[2]:.1f}s (stage seconds); tables identical: {'yes' if same_tables else 'no'}")
    same = same_tables and c_diff < 1e-9 and torch.isfinite(mom2[1]).all()
    print(f"speedup: stats {stats_s[1] / stats_s[2]:.2f}x, recall activations {recall_s[1] / recall_s[2]:.2f}x "
          f"(results identical: {'yes' if same else 'no'})")


if __name__ == "__main__":
    main()
