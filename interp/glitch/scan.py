"""Exhaustive search: the repeat oracle over the whole vocabulary, resumable, stored as ground truth.

The scan writes one compressed CSV per chunk of token ids (with the chunk's oracle wall time) into a
work folder and skips finished chunks when restarted; when every chunk is done it writes the ground
truth (``<spec>_ground_truth.csv.gz``) and a JSON that says exactly how it was made. The ground truth
of the embedded model ships as package data (``interp/data/glitch/``) so tests, benchmarks and
``--quick`` runs need no scan.

Run it as ``python -m interp.glitch.scan --model smollm2-135m --work /path/to/work``, or over several
processes (``torch.distributed``, see :mod:`interp.distributed`) as
``torchrun --nproc_per_node N -m interp.glitch.scan ...``: ranks share the chunks and rank 0 writes
the ground truth, identical to a one-process scan.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pandas as pd

from interp import distributed
from interp.errors import InterpError
from interp.glitch.oracle import RepeatTemplate, repeat_oracle, repeat_template
from interp.model import Model

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "glitch"
GROUND_TRUTH_COLUMNS = ["token_id", "token", "cls", "generated"]


def ground_truth_paths(spec: str, folder: Union[None, str, Path] = None) -> tuple[Path, Path]:
    """Where the ground truth of ``spec`` lives: ``(csv.gz, json)`` (package data by default)."""
    base = Path(folder) if folder is not None else DATA_DIR
    name = Path(spec).name.removesuffix(".gguf")  # a path spec names its file or folder, never a path
    return base / f"{name}_ground_truth.csv.gz", base / f"{name}_ground_truth.json"


def load_ground_truth(spec: str, folder: Union[None, str, Path] = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The stored exhaustive oracle result of a model and how it was made.

    Args:
        spec: the model spec (``smollm2-135m``).
        folder: where to look (default: the package data folder).

    Returns:
        ``(table, meta)``: one row per vocabulary id (``token_id, token, cls, generated``) and the
        JSON record.
    """
    csv, meta_path = ground_truth_paths(spec, folder)
    if not csv.exists() or not meta_path.exists():
        raise InterpError(f"no stored ground truth for {spec!r} at {csv}; run `python -m interp.glitch.scan --model {spec}`")
    table = pd.read_csv(csv, keep_default_na=False)
    return table, json.loads(meta_path.read_text())


def _versions() -> dict[str, str]:
    import sklearn
    import torch
    import transformer_lens
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "transformer_lens": getattr(transformer_lens, "__version__", "?"),
        "sklearn": sklearn.__version__,
    }


def exhaustive_scan(
    model: Model,
    work: Union[str, Path],
    *,
    chunk_size: int = 1024,
    max_new_tokens: int = 10,
    batch_size: int = 256,
    template: Optional[RepeatTemplate] = None,
    out_folder: Union[None, str, Path] = None,
    limit: Optional[int] = None,
    shard: tuple[int, int] = (0, 1),
    note: str = "",
    log: Optional[Any] = None,
) -> Optional[tuple[pd.DataFrame, dict[str, Any]]]:
    """Run the repeat oracle over every vocabulary id, chunk by chunk, resuming finished chunks.

    Args:
        model: the model handle.
        work: folder for chunk files (kept between restarts).
        chunk_size: token ids per chunk file.
        max_new_tokens: oracle reply length.
        batch_size: oracle generation batch size.
        template: the oracle prompt (default: :func:`repeat_template`).
        out_folder: where to write the ground truth (default: the package data folder).
        limit: scan only ids ``0 .. limit-1`` (for trying the scan out).
        shard: ``(i, n)``: this process scans chunks ``i, i+n, ...`` (several processes share a
            scan; the one that finds every chunk done writes the ground truth).
        note: a remark stored in the JSON (how the scan was run).
        log: a writable text stream for progress lines.

    Returns:
        ``(table, meta)`` as written, or None while other shards' chunks are missing.
    """
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    tpl = template or repeat_template(model)
    V = model.d_vocab if limit is None else min(limit, model.d_vocab)
    starts = list(range(0, V, chunk_size))
    t_start = time.time()
    settings: dict[str, Any] = {}
    i_shard, n_shard = shard
    if not 0 <= i_shard < n_shard:
        raise InterpError(f"bad shard {shard}")
    for k, s in enumerate(starts):
        path = work / f"chunk_{s:06d}.csv.gz"
        if path.exists() or k % n_shard != i_shard:
            continue
        ids = list(range(s, min(s + chunk_size, V)))
        load0 = os.getloadavg()[0]
        res = repeat_oracle(model, ids, max_new_tokens=max_new_tokens, batch_size=batch_size, template=tpl, progress=False)
        settings = res.settings
        tab = res.table.assign(seconds=res.seconds / len(ids), load=load0)
        tmp = path.with_suffix(".tmp")
        tab.to_csv(tmp, index=False, compression="gzip")
        tmp.rename(path)
        if log is not None:
            n_g = int((tab.cls == "glitch").sum())
            log.write(f"{time.strftime('%H:%M:%S')} chunk {k + 1}/{len(starts)} ids {s}-{ids[-1]}: {res.seconds:.1f}s, "
                      f"{n_g} glitch, load {load0:.2f}\n")
            log.flush()
    if not all((work / f"chunk_{s:06d}.csv.gz").exists() for s in starts):
        return None
    parts = [pd.read_csv(work / f"chunk_{s:06d}.csv.gz", keep_default_na=False) for s in starts]
    full = pd.concat(parts, ignore_index=True)
    if not settings:
        settings = repeat_oracle(model, [], max_new_tokens=max_new_tokens, batch_size=batch_size, template=tpl).settings
    oracle_seconds = float(full.seconds.sum())
    stamps = [(work / f"chunk_{s:06d}.csv.gz").stat().st_mtime for s in starts]
    first = int(np.argmin(stamps))
    elapsed = max(stamps) - min(stamps) + float(parts[first].seconds.sum())
    meta = {
        "model": model.spec,
        "weight_hash": model.weight_hash,
        "vocab_size": int(V),
        "oracle": settings,
        "prefix_ids": list(tpl.prefix_ids),
        "suffix_ids": list(tpl.suffix_ids),
        "counts": {k: int(v) for k, v in full.cls.value_counts().items()},
        "wall_time_s": oracle_seconds,
        "wall_time_note": "sum of the oracle's generation time over chunks (model loading and file I/O excluded); "
        "the 2-core machine was shared with other jobs during the scan (mean 1-min load average at chunk "
        f"start: {full.groupby(full.token_id // chunk_size).load.first().mean():.2f})",
        "elapsed_wall_s": elapsed,
        "elapsed_note": "first chunk's start to last chunk's end (chunk file times), with every process that shared the scan",
        "note": note,
        "chunk_size": chunk_size,
        "threads": int(__import__("torch").get_num_threads()),
        "versions": _versions(),
        "numerics": model.numerics,
        "dtype": str(model.dtype),
        "precision": model.precision,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "resumed_session_seconds": time.time() - t_start,
    }
    csv, meta_path = ground_truth_paths(model.spec, out_folder)
    csv.parent.mkdir(parents=True, exist_ok=True)
    full[GROUND_TRUTH_COLUMNS].to_csv(csv, index=False, compression="gzip")
    meta_path.write_text(json.dumps(meta, indent=1))
    return full, meta


def main(argv: Optional[list[str]] = None) -> None:
    """Command line: ``python -m interp.glitch.scan --model SPEC --work DIR``."""
    import sys

    from interp.model import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", default=None, help="folder for the ground truth (default: package data)")
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=10)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--shard", default="0/1", help="i/n: scan every n-th chunk starting at i")
    ap.add_argument("--note", default="", help="a remark stored in the JSON")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    world = distributed.init(a.device)
    if world.size > 1:  # launched by torchrun: ranks share the chunks, rank 0 writes the ground truth
        i, n = world.rank, world.size
    else:
        i, n = (int(x) for x in a.shard.split("/"))
    model = load_model(a.model, device=a.device)
    done = exhaustive_scan(model, a.work, chunk_size=a.chunk_size, batch_size=a.batch_size, max_new_tokens=a.max_new_tokens,
                           out_folder=a.out, limit=a.limit, shard=(i, n), note=a.note,
                           log=sys.stdout if world.is_main else None)
    world.barrier()
    if world.size > 1 and world.is_main:
        done = exhaustive_scan(model, a.work, chunk_size=a.chunk_size, batch_size=a.batch_size,
                               max_new_tokens=a.max_new_tokens, out_folder=a.out, limit=a.limit, shard=(0, 1),
                               note=a.note or f"{world.size} ranks ({world.backend})")
    world.barrier()
    distributed.finish(world)
    if not world.is_main:
        return
    if done is None:
        print("shard finished; other chunks still missing")
    else:
        print(json.dumps(done[1]["counts"]), f"{done[1]['wall_time_s']:.0f}s")


if __name__ == "__main__":
    main()
