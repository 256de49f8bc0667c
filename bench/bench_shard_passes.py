"""The sharded passes besides the vocabulary scan, one process vs two gloo ranks (one thread each).

1. ROME's key second moment (``python -m interp.rome.layer_stats``) over ``--tokens`` Wikipedia
   tokens at the model's ROME layer: wall time of each command, and whether C agrees.
2. Recall's activation pass inside ``interp run recall --quick``: the ``activations`` stage's
   seconds from each run's manifest, and whether every table agrees.
3. ROME's edits inside ``interp run rome`` at full sizes on ``--rome-requests`` packaged requests
   (0 skips it): the ``edits`` stage's wall seconds. Here the one process gets every core
   (``torch.get_num_threads()`` of a plain run), as a user would run it, so the ratio is what the
   ranks add on this machine; the edits agree to float rounding (threads change summation order).

Prints as its last line ``speedup: stats X.XXx, recall activations Y.YYx, rome edits Z.ZZx
(results identical: yes|no)``.

Run: python bench/bench_shard_passes.py [--model smollm2-135m] [--tokens 32768] [--rome-requests 8]
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
    ap.add_argument("--rome-requests", type=int, default=8, help="packaged ROME requests edited at full sizes (0: skip)")
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
    rome = ""
    if a.rome_requests > 0:
        edits_s, edits = rome_edits(a.model, a.rome_requests, env)
        num = [c for c in edits[1].columns if edits[1][c].dtype.kind == "f" and not c.startswith("seconds")]
        rel = float(((edits[1][num] - edits[2][num]).abs() / (edits[1][num].abs() + 1e-6)).max().max())
        agree = list(edits[1].case_id) == list(edits[2].case_id) and rel < 1e-3
        print(f"{a.model}: ROME edits, {a.rome_requests} requests at full sizes: 1 process x {edits_s['threads']} threads "
              f"{edits_s[1]:.1f}s, 2 ranks x 1 thread {edits_s[2]:.1f}s (edits stage); largest relative difference of "
              f"an edit's value {rel:.1e}")
        same = same and agree
        rome = f", rome edits {edits_s[1] / edits_s[2]:.2f}x"
    print(f"speedup: stats {stats_s[1] / stats_s[2]:.2f}x, recall activations {recall_s[1] / recall_s[2]:.2f}x{rome} "
          f"(results identical: {'yes' if same else 'no'})")


def rome_edits(model: str, n: int, env: dict[str, str]) -> tuple[dict, dict[int, pd.DataFrame]]:
    """``interp run rome`` at full sizes on ``n`` packaged requests: one process with this machine's
    threads, then two ranks with one thread each (the key statistics come from one shared cache)."""
    from commands import TORCHRUN_2, timed_run

    threads = torch.get_num_threads()
    secs: dict = {"threads": threads}
    edits = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cache = {**env, "INTERP_CACHE": str(d / "cache")}
        sets = ["--set", f"n_requests={n}", "--set", "country_requests=0"]
        for k, (pre, e) in {1: ([sys.executable], {**cache, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}),
                            2: (TORCHRUN_2, cache)}.items():
            out = d / f"rome{k}"
            timed_run([*pre, "-m", "interp.cli", "run", "rome", "--model", model, "--no-png", "--out", str(out), *sets], e)
            secs[k] = json.loads((out / "rome" / "manifest.json").read_text())["stages"]["edits"]["seconds"]
            edits[k] = pd.read_csv(out / "rome" / "tables" / "edits.csv")
    return secs, edits


if __name__ == "__main__":
    main()
