"""Exhaustive search: the repeat oracle over the whole vocabulary, resumable, stored as ground truth.

The scan writes one compressed CSV per chunk of token ids (with the chunk's oracle wall time) into a
work folder and skips finished chunks when restarted; when every chunk is done it writes the ground
truth (``<spec>_ground_truth.csv.gz``) and a JSON that says exactly how it was made. The ground truth
of the embedded model ships as package data (``interp/data/glitch/``) so tests, benchmarks and
``--quick`` runs need no scan. A vocabulary too large to scan whole here is scanned on a stated random
sample (``--sample N --seed S``; Gemma 3's and Qwen2.5's ground truths are 16,384-id samples), which
:func:`interp.glitch.pipeline.run` then searches in place of the whole vocabulary.

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


def sample_ids(vocab_size: int, n: int, seed: int = 0) -> list[int]:
    """A stated random sample of vocabulary ids: ``n`` of ``0 .. vocab_size - 1`` without
    replacement, drawn by ``numpy.random.default_rng(seed)``, sorted."""
    if not 0 < n <= vocab_size:
        raise InterpError(f"a sample needs 1 to {vocab_size} ids, not {n}")
    return sorted(int(t) for t in np.random.default_rng(seed).choice(vocab_size, size=n, replace=False))


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
    sample: Optional[int] = None,
    sample_seed: int = 0,
) -> Optional[tuple[pd.DataFrame, dict[str, Any]]]:
    """Run the repeat oracle over every vocabulary id (or a stated random sample), chunk by chunk,
    resuming finished chunks.

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
        sample: scan only this many ids drawn at random from the vocabulary (``limit`` included),
            :func:`sample_ids` with ``sample_seed``; the ground truth records the draw. For a
            vocabulary too large to scan whole on the machine at hand (Gemma 3's 262,144 ids).
        sample_seed: the draw's seed.

    Returns:
        ``(table, meta)`` as written, or None while other shards' chunks are missing.
    """
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    tpl = template or repeat_template(model)
    V = model.d_vocab if limit is None else min(limit, model.d_vocab)
    if sample is None:
        ids_all = list(range(V))
        chunk_name = "chunk"
    else:
        ids_all = sample_ids(V, sample, sample_seed)
        chunk_name = "sample"
        drawn = {"n": len(ids_all), "seed": int(sample_seed), "of": int(V)}
        mark = work / "sample.json"
        if mark.exists() and json.loads(mark.read_text()) != drawn:
            raise InterpError(f"{work} holds chunks of another sample ({mark.read_text().strip()}); use another --work folder")
        mark.write_text(json.dumps(drawn))
    starts = list(range(0, len(ids_all), chunk_size))
    t_start = time.time()
    settings: dict[str, Any] = {}
    i_shard, n_shard = shard
    if not 0 <= i_shard < n_shard:
        raise InterpError(f"bad shard {shard}")
    for k, s in enumerate(starts):
        path = work / f"{chunk_name}_{s:06d}.csv.gz"
        if path.exists() or k % n_shard != i_shard:
            continue
        ids = ids_all[s : s + chunk_size]
        load0 = os.getloadavg()[0]
        res = repeat_oracle(model, ids, max_new_tokens=max_new_tokens, batch_size=batch_size, template=tpl, progress=False)
        settings = res.settings
        tab = res.table.assign(seconds=res.seconds / len(ids), load=load0)
        tmp = path.with_suffix(".tmp")
        tab.to_csv(tmp, index=False, compression="gzip")
        tmp.rename(path)
        if log is not None:
            n_g = int((tab.cls == "glitch").sum())
            log.write(f"{time.strftime('%H:%M:%S')} chunk {k + 1}/{len(starts)} ids {ids[0]}-{ids[-1]}: {res.seconds:.1f}s, "
                      f"{n_g} glitch, load {load0:.2f}\n")
            log.flush()
    files = [work / f"{chunk_name}_{s:06d}.csv.gz" for s in starts]
    if not all(f.exists() for f in files):
        return None
    parts = [pd.read_csv(f, keep_default_na=False) for f in files]
    full = pd.concat(parts, ignore_index=True)
    if not settings:
        settings = repeat_oracle(model, [], max_new_tokens=max_new_tokens, batch_size=batch_size, template=tpl).settings
    oracle_seconds = float(full.seconds.sum())
    stamps = [f.stat().st_mtime for f in files]
    first = int(np.argmin(stamps))
    elapsed = max(stamps) - min(stamps) + float(parts[first].seconds.sum())
    meta = {
        "model": model.spec,
        "weight_hash": model.weight_hash,
        "vocab_size": int(V),
        **({"sample": {**drawn, "draw": "sorted(numpy.random.default_rng(seed).choice(of, n, replace=False))"}}
           if sample is not None else {}),
        "oracle": settings,
        "prefix_ids": list(tpl.prefix_ids),
        "suffix_ids": list(tpl.suffix_ids),
        "counts": {k: int(v) for k, v in full.cls.value_counts().items()},
        "wall_time_s": oracle_seconds,
        "wall_time_note": "sum of the oracle's generation time over chunks (model loading and file I/O excluded); "
        "the 2-core machine was shared with other jobs during the scan (mean 1-min load average at chunk "
        f"start: {full.groupby(np.arange(len(full)) // chunk_size).load.first().mean():.2f})",
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


def consensus_paths(spec: str, folder: Union[None, str, Path] = None) -> tuple[Path, Path]:
    """Where the consensus ground truth of ``spec`` lives: ``(csv.gz, json)`` (package data by default)."""
    csv, meta = ground_truth_paths(spec, folder)
    return (csv.with_name(csv.name.replace("_ground_truth", "_consensus")),
            meta.with_name(meta.name.replace("_ground_truth", "_consensus")))


def load_consensus(spec: str, folder: Union[None, str, Path] = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The stored consensus verdicts of a model (see :func:`consensus_scan`) and how they were made.

    Returns:
        ``(table, meta)``: one row per candidate token of the single-prompt ground truth, with
        ``token_id``, one column per voting prompt (``glitch``/``normal``, ``""`` where the cascade did
        not ask it) and ``consensus_all``; ``meta["prompts"]`` lists the prompts in asking order.
    """
    csv, meta_path = consensus_paths(spec, folder)
    if not csv.exists() or not meta_path.exists():
        raise InterpError(f"no stored consensus verdicts for {spec!r} at {csv}; run "
                          f"`python -m interp.glitch.scan --model {spec} --work DIR --consensus`")
    return pd.read_csv(csv, keep_default_na=False), json.loads(meta_path.read_text())


def consensus_scan(
    model: Model,
    work: Union[str, Path],
    *,
    prompts: Optional[list[str]] = None,
    templates: Optional[dict[str, RepeatTemplate]] = None,
    chunk_size: int = 1024,
    max_new_tokens: int = 10,
    batch_size: int = 128,
    folder: Union[None, str, Path] = None,
    out_folder: Union[None, str, Path] = None,
    note: str = "",
    log: Optional[Any] = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Continue the stored single-prompt ground truth into the ``all``-label consensus cascade.

    The single prompt's verdict on every candidate is read from the stored ground truth (made by
    :func:`exhaustive_scan` with the same prompt, checked by its token ids); each later prompt of
    :data:`interp.glitch.consensus.ORACLE_PROMPTS` is asked only about the tokens every earlier prompt
    called glitch, chunk by chunk (resumable, like the scan). Every verdict asked is kept.

    Args:
        model: the model handle.
        work: folder for chunk files (kept between restarts).
        prompts: the voting prompts after the single prompt (default: the rest of the registry).
        templates: name -> prompt instead of the registry's, the stored single prompt first (for a
            model whose context cannot hold the registry's few-shot prompts).
        chunk_size: single-prompt glitch tokens per chunk file.
        max_new_tokens, batch_size: as in :func:`repeat_oracle`.
        folder: where the single-prompt ground truth is read (default: package data).
        out_folder: where the consensus verdicts are written (default: package data).
        note: a remark stored in the JSON.
        log: a writable text stream for progress lines.

    Returns:
        ``(table, meta)`` as written (see :func:`load_consensus`).
    """
    from interp.glitch.consensus import ORACLE_PROMPTS, SINGLE_PROMPT, consensus_labels, consensus_oracle, oracle_templates

    truth, truth_meta = load_ground_truth(model.spec, folder)
    if templates is None:
        later = [n for n in ORACLE_PROMPTS if n != SINGLE_PROMPT] if prompts is None else list(prompts)
        if SINGLE_PROMPT in later:
            raise InterpError(f"the single prompt {SINGLE_PROMPT!r} is read from the stored ground truth; name only later prompts")
        tpls = oracle_templates(model, [SINGLE_PROMPT, *later])
    else:
        if len(templates) < 2 or next(iter(templates)) != SINGLE_PROMPT:
            raise InterpError(f"templates must name {SINGLE_PROMPT!r} first and at least one later prompt")
        tpls = dict(templates)
        later = list(tpls)[1:]
    if list(tpls[SINGLE_PROMPT].prefix_ids) != list(truth_meta.get("prefix_ids", [])):
        raise InterpError(f"the stored ground truth of {model.spec!r} was made with another prompt than {SINGLE_PROMPT!r}")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    cand = truth[truth.cls.isin(["glitch", "normal"])]
    glitch_ids = cand.loc[cand.cls == "glitch", "token_id"].astype(int).to_numpy()
    starts = list(range(0, len(glitch_ids), chunk_size))
    for k, s in enumerate(starts):
        path = work / f"consensus_{s:06d}.csv.gz"
        if path.exists():
            continue
        ids = glitch_ids[s:s + chunk_size].tolist()
        res = consensus_oracle(model, ids, {n: tpls[n] for n in later}, cascade=True, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, progress=False)
        tab = res.table[["token_id", *later]].copy()
        for n in later:
            tab[f"seconds_{n}"] = res.seconds[n]
            tab[f"calls_{n}"] = res.calls[n]
        tmp = path.with_suffix(".tmp")
        tab.to_csv(tmp, index=False, compression="gzip")
        tmp.rename(path)
        if log is not None:
            log.write(f"{time.strftime('%H:%M:%S')} chunk {k + 1}/{len(starts)}: "
                      + ", ".join(f"{n} {res.calls[n]} asked {res.seconds[n]:.0f}s" for n in later)
                      + f"; {len(res.glitch_ids)} glitch under all\n")
            log.flush()
    parts = [pd.read_csv(work / f"consensus_{s:06d}.csv.gz", keep_default_na=False) for s in starts]
    asked = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["token_id", *later])
    seconds = {n: float(sum(p[f"seconds_{n}"].iloc[0] for p in parts if len(p))) for n in later}
    calls = {n: int(sum(p[f"calls_{n}"].iloc[0] for p in parts if len(p))) for n in later}
    table = pd.DataFrame({"token_id": cand.token_id.astype(int).to_numpy(), SINGLE_PROMPT: cand.cls.to_numpy()})
    table = table.merge(asked[["token_id", *later]], on="token_id", how="left").fillna("")
    table = pd.concat([table, consensus_labels(table, [SINGLE_PROMPT, *later])[["consensus_all"]]], axis=1)
    counts = table.consensus_all.value_counts()
    meta = {
        "model": model.spec,
        "weight_hash": model.weight_hash,
        "prompts": [SINGLE_PROMPT, *later],
        "templates": {n: t.describe() for n, t in tpls.items()},
        "single_prompt_from": ground_truth_paths(model.spec, folder)[0].name,
        "single_prompt_scan_s_per_call": float(truth_meta["wall_time_s"]) / max(1, len(table)),
        "single_prompt_scan_note": "the stored single-prompt scan's oracle time per candidate (its own machine and load)",
        "n_candidates": int(len(table)),
        "counts_consensus_all": {k: int(v) for k, v in counts.items()},
        "calls": {SINGLE_PROMPT: int(len(table)), **calls},
        "seconds": seconds,
        "s_per_call": {n: seconds[n] / calls[n] for n in later if calls[n]},
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "chunk_size": chunk_size,
        "decision_rule": "consensus_all: glitch when every prompt says glitch; the cascade asks a prompt only about tokens "
                         "every earlier prompt called glitch (one normal settles it)",
        "note": note,
        "threads": int(__import__("torch").get_num_threads()),
        "versions": _versions(),
        "dtype": str(model.dtype),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    csv, meta_path = consensus_paths(model.spec, out_folder)
    csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False, compression="gzip")
    meta_path.write_text(json.dumps(meta, indent=1))
    return table, meta


def main(argv: Optional[list[str]] = None) -> None:
    """Command line: ``python -m interp.glitch.scan --model SPEC --work DIR``."""
    import sys

    from interp.model import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", default=None, help="folder for the ground truth (default: package data)")
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="oracle prompts per batch (default 256; 128 with --consensus, as `interp run glitch` asks them)")
    ap.add_argument("--max-new-tokens", type=int, default=10)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--sample", type=int, default=None,
                    help="scan a random sample of this many ids instead of the whole vocabulary (stated in the ground truth)")
    ap.add_argument("--seed", type=int, default=0, help="the sample's seed")
    ap.add_argument("--shard", default="0/1", help="i/n: scan every n-th chunk starting at i")
    ap.add_argument("--note", default="", help="a remark stored in the JSON")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--consensus", action="store_true",
                    help="continue the stored single-prompt ground truth into the all-prompts consensus cascade")
    a = ap.parse_args(argv)
    if a.consensus:
        _, meta = consensus_scan(load_model(a.model, device=a.device), a.work, chunk_size=a.chunk_size,
                                     max_new_tokens=a.max_new_tokens, batch_size=a.batch_size or 128, folder=a.out,
                                     out_folder=a.out, note=a.note, log=sys.stdout)
        print(json.dumps(meta["counts_consensus_all"]), {k: f"{v:.0f}s" for k, v in meta["seconds"].items()})
        return
    world = distributed.init(a.device)
    if world.size > 1:  # launched by torchrun: ranks share the chunks, rank 0 writes the ground truth
        i, n = world.rank, world.size
    else:
        i, n = (int(x) for x in a.shard.split("/"))
    model = load_model(a.model, device=a.device)
    a.batch_size = a.batch_size or 256
    done = exhaustive_scan(model, a.work, chunk_size=a.chunk_size, batch_size=a.batch_size, max_new_tokens=a.max_new_tokens,
                           out_folder=a.out, limit=a.limit, shard=(i, n), note=a.note,
                           log=sys.stdout if world.is_main else None, sample=a.sample, sample_seed=a.seed)
    world.barrier()
    if world.size > 1 and world.is_main:
        done = exhaustive_scan(model, a.work, chunk_size=a.chunk_size, batch_size=a.batch_size,
                               max_new_tokens=a.max_new_tokens, out_folder=a.out, limit=a.limit, shard=(0, 1),
                               note=a.note or f"{world.size} ranks ({world.backend})", sample=a.sample, sample_seed=a.seed)
    world.barrier()
    distributed.finish(world)
    if not world.is_main:
        return
    if done is None:
        print("shard finished; other chunks still missing")
    else:
        print(json.dumps(done[1]["counts"]), f"{done[1]['wall_time_s']:.0f}s")


if __name__ == "__main__":
    try:
        main()
    except InterpError as e:
        raise SystemExit(f"error: {e}")
