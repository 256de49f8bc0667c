"""The covariance statistic C = E[k k^T] of MLP keys at one layer, streamed and cached on disk.

As in ROME's ``layer_stats.py``, the second moment is accumulated batch by batch over every token
of a text corpus (each batch's ``K^T K`` in float32, summed into a float64 running total) and cached
under ``interp.loading.cache_dir()/stats/`` as safetensors with a JSON key naming exactly what it
was computed from: model weight hash, layer, corpus id, token count, per-text token cap and dtype.
Snapshots at growing token counts are kept so the stability of C^-1 can be reported
(:func:`inverse_convergence`).

Corpora (``corpus`` parameter): ``"wikipedia"`` (default; the packaged Wikipedia lead sections,
``train`` split), ``"generic"`` (the packaged generic paragraphs), ``"model"`` (text the model
writes itself from a seeded starter word, continued greedily), a path to a user's text file or
folder, or ``"hf:NAME[:CONFIG]"`` (a Hugging Face dataset's ``text`` column). ``identity`` is not a
corpus but the C = I variant of the released configuration of Yang et al. (2024)
(:func:`identity_stats`).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file

import interp
from interp import corpus as corpus_mod
from interp import distributed
from interp.errors import InterpError
from interp.loading import cache_dir
from interp.model import Model
from interp.rome.compute_u import STARTERS, key_hook

IDENTITY = "identity"


@dataclass
class LayerStats:
    """A second-moment statistic of keys.

    Attributes:
        mom2: ``E[k k^T]`` over all tokens seen, float64 (the identity for the C = I variant).
        n_tokens: tokens accumulated (0 for C = I).
        n_samples: texts accumulated.
        snapshots: ``n_tokens -> E[k k^T]`` after that many tokens (float32).
        key: what the statistic was computed from (the cache key fields).
        path: the cache file.
        cached: whether it was read from the cache.
        description: which text it was computed from.
    """

    mom2: Float[torch.Tensor, "d_mlp d_mlp"]
    n_tokens: int
    n_samples: int
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    key: dict = field(default_factory=dict)
    path: Optional[Path] = None
    cached: bool = False
    description: str = ""


def model_sampled_texts(model: Model, n_samples: int, n_tokens: int, seed: int = 0, batch_size: int = 64) -> list[list[int]]:
    """Texts written by the model itself: a seeded starter word plus a random vocabulary word,
    continued greedily to ``n_tokens`` tokens (token ids, starter included)."""
    rng = random.Random(seed)
    vocab = [
        i
        for i in range(min(model.d_vocab, len(model.tokenizer)))
        if (s := model.tokenizer.decode([i])).startswith(" ") and s[1:].isalpha() and s[1:].islower() and len(s) >= 5
    ]
    if not vocab:
        vocab = list(range(min(model.d_vocab, len(model.tokenizer))))
    starts = [model.encode(rng.choice(STARTERS)) + [rng.choice(vocab)] for _ in range(n_samples)]
    new = interp.greedy_generate(
        model, starts, max_new_tokens=max(1, n_tokens - min(len(s) for s in starts)), batch_size=batch_size, stop_at_eos=False, desc="corpus"
    )
    return [(s + t)[:n_tokens] for s, t in zip(starts, new)]


def corpus_texts(corpus: str) -> tuple[list[str], str]:
    """The texts of a named corpus and their description (``model`` has no fixed texts)."""
    if corpus == "wikipedia":
        if not hasattr(corpus_mod, "wikipedia_texts"):
            raise InterpError("the packaged Wikipedia text is not available in this install; set cov_corpus=generic or a file")
        return corpus_mod.wikipedia_texts("train"), "packaged English Wikipedia lead sections (train split)"
    if corpus == "generic":
        return corpus_mod.generic_texts(), "packaged generic English paragraphs"
    if corpus.startswith("hf:"):
        parts = corpus[3:].split(":")
        try:
            import datasets

            ds = datasets.load_dataset(parts[0], parts[1] if len(parts) > 1 else None, split="train", streaming=True)
            texts = []
            for row in ds:
                if len(row.get("text", "").strip()) >= 20:
                    texts.append(row["text"])
                if len(texts) >= 20000:
                    break
        except Exception as e:  # noqa: BLE001
            raise InterpError(f"cannot load Hugging Face dataset {parts[0]!r} (offline?): {type(e).__name__}: {e}") from e
        return texts, f"Hugging Face dataset {corpus[3:]}"
    return corpus_mod.read_texts(corpus), f"user text {Path(corpus).expanduser().resolve()}"


def token_stream(model: Model, corpus: str, n_tokens: int, max_tokens: int, seed: int = 0, chunk: int = 64) -> Iterator[list[int]]:
    """Token sequences of the corpus in order, each cut to ``max_tokens``, the last cut so that
    exactly ``n_tokens`` tokens are yielded (fewer when the corpus holds fewer)."""
    if corpus == "model":
        texts_tok = model_sampled_texts(model, max(1, -(-n_tokens // max_tokens)), max_tokens, seed)
        chunks: Iterator[list[list[int]]] = iter([texts_tok])
    else:
        texts, _ = corpus_texts(corpus)
        chunks = (model.encode(texts[i : i + chunk]) for i in range(0, len(texts), chunk))
    left = n_tokens
    for block in chunks:
        for t in block:
            t = t[: min(max_tokens, left)]
            if len(t) < 2:
                continue
            yield t
            left -= len(t)
            if left <= 0:
                return


def corpus_id(corpus: str, seed: int = 0) -> str:
    """The id naming a corpus in the cache key and in results, found without reading or generating
    the texts (a user file is named by its path, size and modification time)."""
    if corpus == "wikipedia":
        return getattr(corpus_mod, "WIKIPEDIA_ID", "wikipedia")
    if corpus == IDENTITY:
        return IDENTITY
    if corpus == "model":
        return f"model-sampled-v1:seed{seed}"
    if corpus == "generic":
        return corpus_mod.GENERIC_ID
    if corpus.startswith("hf:"):
        return corpus
    p = Path(corpus).expanduser()
    if not p.exists():
        raise InterpError(f"no such corpus file or folder: {p}")
    files = sorted(p.rglob("*.txt")) if p.is_dir() else [p]
    sig = "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return f"file:{p.name}:{hashlib.sha256(sig.encode()).hexdigest()[:16]}"


def stats_key(model: Model, layer: int, corpus: str, n_tokens: int, max_tokens: int, seed: int = 0) -> dict:
    """The fields that identify a cached statistic."""
    return {
        "stat": "mom2",
        "hook": key_hook(layer).split(".", 2)[-1],
        "weight_hash": model.weight_hash,
        "layer": int(layer),
        "corpus": corpus_id(corpus, seed),
        "split": "train" if corpus == "wikipedia" else "",
        "n_tokens": int(n_tokens),
        "max_tokens": int(max_tokens),
        "dtype": model.precision,  # "float32", or the low-precision policy (mixed or pure)
    }


def stats_path(key: dict) -> Path:
    """Where the statistic with ``key`` is cached (safetensors; the key beside it as JSON)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "stats" / f"rome-mom2-L{key['layer']}-{digest}.safetensors"


def snapshot_marks(n_tokens: int, n_snapshots: int = 6) -> list[int]:
    """Token counts at which the running statistic is kept: halvings down from ``n_tokens`` (each
    snapshot is taken at the first text boundary at or past its mark)."""
    return sorted({max(1, n_tokens >> i) for i in range(n_snapshots)})


def identity_stats(model: Model, layer: int) -> LayerStats:
    """C = I: the released configuration of Yang et al. (2024) (``mom2_adjustment`` off), under
    which u = k̄ and the denominator is the plain dot product k̄ᵀk."""
    key = {"stat": "mom2", "layer": int(layer), "corpus": IDENTITY, "weight_hash": model.weight_hash}
    return LayerStats(torch.eye(model.d_mlp, dtype=torch.float64), 0, 0, {}, key, None, False, "identity (no key statistic)")


def _read_cache(path: Path, key: dict) -> Optional[LayerStats]:
    """The cached statistic when its JSON names ``key`` and the tensor file's digest matches (checked
    before the tensor file is parsed; nothing is unpickled)."""
    from interp.store import sha256_file

    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != key or not path.is_file() or sha256_file(path) != meta.get("sha256"):
        return None
    try:
        t = load_file(str(path))
        snaps = {int(n): t[f"snapshot_{n}"] for n in meta["snapshot_tokens"]}
        return LayerStats(t["mom2"], int(meta["n_tokens"]), int(meta["n_samples"]), snaps, key, path, True,
                          meta.get("description", ""))
    except Exception:  # noqa: BLE001 - an unreadable cache entry is recomputed
        return None


def _write_cache(stat: LayerStats) -> None:
    """Store ``stat`` as safetensors (tensors) and JSON (key, counts, the tensor file's digest), atomically."""
    from interp.store import atomic_write, sha256_file, write_text

    path = stat.path
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"mom2": stat.mom2.contiguous(), **{f"snapshot_{n}": s.contiguous() for n, s in stat.snapshots.items()}}
    atomic_write(path, lambda t: save_file(tensors, str(t)))
    meta = {"key": stat.key, "sha256": sha256_file(path), "n_tokens": stat.n_tokens, "n_samples": stat.n_samples,
            "snapshot_tokens": sorted(stat.snapshots), "description": stat.description}
    write_text(path.with_suffix(".json"), json.dumps(meta, indent=1))


def layer_stats(
    model: Model,
    layer: int,
    corpus: str = "wikipedia",
    n_tokens: int = 100_000,
    max_tokens: int = 128,
    seed: int = 0,
    batch_size: int = 16,
    use_cache: bool = True,
    n_snapshots: int = 6,
) -> LayerStats:
    """Stream ``E[k k^T]`` of the MLP keys at ``layer`` over ``n_tokens`` tokens of a corpus (cached).

    Args:
        model: the model handle.
        layer: the MLP layer.
        corpus: ``"wikipedia"``, ``"generic"``, ``"model"``, a text file or folder,
            ``"hf:NAME[:CONFIG]"``, or ``"identity"`` for C = I (:func:`identity_stats`).
        n_tokens: tokens to accumulate (fewer if the corpus holds fewer).
        max_tokens: tokens kept per text (each text starts at its own first token, as ROME's do).
        seed: seeds model-sampled text.
        batch_size: texts per forward pass.
        use_cache: read and write the on-disk cache.
        n_snapshots: running-moment snapshots kept for the convergence report.

    Under ``torchrun`` (:mod:`interp.distributed`) the chunks of texts are shared among the ranks and
    rank 0 adds their sums: the same statistic as one process, up to float64 summation order.

    Returns:
        The statistic (from the cache when one with the same key exists); None on ranks other than 0.
    """
    if corpus == IDENTITY:
        return identity_stats(model, layer)
    if n_tokens < 2 or max_tokens < 2:
        raise InterpError("the covariance corpus needs n_tokens >= 2 and max_tokens >= 2")
    if not (0 <= layer < model.n_layers):
        raise InterpError(f"layer {layer} out of range for {model.n_layers} layers")
    key = stats_key(model, layer, corpus, n_tokens, max_tokens, seed)
    path = stats_path(key)
    w = distributed.current()
    if use_cache and w.is_main:  # a rank asked to help computes (its cache may differ from rank 0's)
        hit = _read_cache(path, key)
        if hit is not None:
            return hit
    if w.size > 1:
        distributed.dispatch("interp.rome.layer_stats:layer_stats", layer=layer, corpus=corpus, n_tokens=n_tokens,
                             max_tokens=max_tokens, seed=seed, batch_size=batch_size, use_cache=use_cache,
                             n_snapshots=n_snapshots)
    description = "text sampled from the model itself (seeded starter word + random word, greedy continuation)" \
        if corpus == "model" else corpus_texts(corpus)[1]
    hook = key_hook(layer)
    chunks, ends = stat_chunks(list(token_stream(model, corpus, n_tokens, max_tokens, seed)),
                               snapshot_marks(n_tokens, n_snapshots), batch_size)
    if not chunks:
        raise InterpError(f"corpus {corpus!r} gave no tokens")
    snap_at = snapshot_chunks(ends, snapshot_marks(n_tokens, n_snapshots))
    state = _shard_state(model, key, chunks, snap_at, hook, layer, batch_size, w, path)
    if not w.is_main:
        return None  # type: ignore[return-value]
    acc = state["sum"]
    count, n_texts = int(ends[-1]), sum(len(c) for c in chunks)
    snaps = {int(ends[c]): (state[f"partial_{c}"] / float(ends[c])).float() for c in snap_at}
    snaps[count] = (acc / count).float()
    stat = LayerStats(acc / count, count, n_texts, snaps, key, path, False, description)
    if use_cache:
        _write_cache(stat)
    return stat


def stat_chunks(texts: list[list[int]], marks: list[int], batch_size: int) -> tuple[list[list[list[int]]], list[int]]:
    """The texts cut into chunks of at most ``batch_size`` (one forward pass each), a chunk also ending
    at the text that first reaches each snapshot mark (texts are never split: a split text's second
    part would start on an anomalous first-token key). Returns the chunks and the token count after
    each chunk."""
    chunks: list[list[list[int]]] = []
    ends: list[int] = []
    cur: list[list[int]] = []
    count = 0
    for t in texts:
        crossed = any(count < m <= count + len(t) for m in marks)
        cur.append(t)
        count += len(t)
        if crossed or len(cur) >= batch_size:
            chunks.append(cur)
            ends.append(count)
            cur = []
    if cur:
        chunks.append(cur)
        ends.append(count)
    return chunks, ends


def snapshot_chunks(ends: list[int], marks: list[int]) -> list[int]:
    """The chunk after which each snapshot is taken (the first chunk ending at or past its mark)."""
    return sorted({next(i for i, e in enumerate(ends) if e >= m) for m in marks if m <= ends[-1]} - {len(ends) - 1})


CHECKPOINT_CHUNKS = 32  # a rank of a sharded pass stores its running sums after this many chunks


def _shard_state(model: Model, key: dict, chunks: list[list[list[int]]], snap_at: list[int], hook: str, layer: int,
                 batch_size: int, w: "distributed.World", path: Path) -> dict[str, torch.Tensor]:
    """This rank's sums over the chunks it owns, and on rank 0 everyone's: ``sum`` (float64) and
    ``partial_C`` (the sum up to chunk C, for the snapshots). One process keeps them in memory; under
    ``torchrun`` each rank stores its state in ``<cache file>.parts/`` (every
    :data:`CHECKPOINT_CHUNKS` chunks, so a restarted rank resumes) and rank 0 adds them up."""
    d = model.d_mlp
    acc = torch.zeros(d, d, dtype=torch.float64)
    partial: dict[int, torch.Tensor] = {}
    start = 0
    parts = path.with_suffix(".parts")
    rank_key = {**key, "world": w.size, "rank": w.rank, "batch_size": batch_size}
    rank_file = parts / f"rank{w.rank:03d}-of-{w.size:03d}.safetensors"

    def save(next_chunk: int) -> None:
        distributed.save_chunk(rank_file, {"sum": acc, "next": torch.tensor(next_chunk),
                                           **{f"partial_{c}": v for c, v in partial.items()}}, rank_key)

    if w.size > 1 and distributed.chunk_ready(rank_file, rank_key):
        got = distributed.load_chunk(rank_file, rank_key)
        acc, start = got["sum"], int(got["next"])
        partial = {int(k.split("_")[1]): v for k, v in got.items() if k.startswith("partial_")}
    done = 0
    try:
        for c in range(start, len(chunks)):
            if w.owns(c):
                cap = interp.capture(model, chunks[c], hooks=[hook], positions="all", batch_size=batch_size,
                                     stop_at_layer=layer + 1, progress=False)
                for k in cap.acts[hook]:
                    k = k.float()
                    acc += (k.T @ k).double()
                done += 1
            if c in snap_at:
                partial[c] = acc.clone()
            if w.size > 1 and (done and done % CHECKPOINT_CHUNKS == 0 and w.owns(c) or c == len(chunks) - 1):
                save(c + 1)
    finally:  # a rank that fails still meets the others here, so none waits for it forever
        w.barrier()
    if w.size == 1:
        return {"sum": acc, **{f"partial_{c}": v for c, v in partial.items()}}
    if not w.is_main:
        return {}
    total: dict[str, torch.Tensor] = {}
    for r in range(w.size):
        f = parts / f"rank{r:03d}-of-{w.size:03d}.safetensors"
        got = distributed.load_chunk(f, {**rank_key, "rank": r})
        for name, v in got.items():
            if name != "next":
                total[name] = total[name] + v if name in total else v
    for f in parts.glob("rank*.safetensors"):
        f.unlink()
    try:
        parts.rmdir()
    except OSError:
        pass
    return total


def inverse_covariance(mom2: Float[torch.Tensor, "d_mlp d_mlp"], ridge: float = 0.0) -> Float[torch.Tensor, "d_mlp d_mlp"]:
    """C^-1, with ``ridge * mean(diag C)`` added to the diagonal first (0 = ROME's plain inverse)."""
    c = mom2.double()
    if ridge > 0:
        c = c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype)
    try:
        return torch.linalg.inv(c)
    except RuntimeError as e:
        raise InterpError(f"the key second moment is singular ({e}); use more tokens or a ridge > 0") from e


def inverse_convergence(
    stat: LayerStats, probe_keys: Float[torch.Tensor, "n d_mlp"], ridge: float = 0.0
) -> list[dict]:
    """How the ROME direction C^-1 k settles as tokens grow, against the largest-sample estimate.

    Args:
        stat: the statistic with its snapshots (the last one is the full-sample C).
        probe_keys: keys (e.g. the requests' k̄) whose directions ``C^-1 k`` are compared.
        ridge: as in :func:`inverse_covariance`.

    Returns:
        One row per snapshot: ``n_tokens``, the relative Frobenius distance of C to the final C,
        the mean and minimum cosine of ``C^-1 k`` with the final direction; the final row also
        carries the condition number of C (NaN on the others).
    """
    if not stat.snapshots:
        return []

    def directions(m: torch.Tensor) -> torch.Tensor:
        c = m.double()
        if ridge > 0:
            c = c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype)
        return torch.linalg.solve(c, probe_keys.double().T).T

    final = stat.mom2.double()
    u_final = directions(final)
    rows = []
    last = max(stat.snapshots)
    for n, m in sorted(stat.snapshots.items()):
        u = directions(m)
        cos = torch.nn.functional.cosine_similarity(u, u_final, dim=-1)
        row = {
            "n_tokens": int(n),
            "mom2_rel_change": float((m.double() - final).norm() / final.norm()),
            "direction_cosine_mean": float(cos.mean()),
            "direction_cosine_min": float(cos.min()),
            "condition_number": float("nan"),
        }
        if n == last:
            ev = torch.linalg.eigvalsh(final)
            row["condition_number"] = float(ev.max() / ev.min().clamp_min(1e-30))
        rows.append(row)
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m interp.rome.layer_stats``: compute (or find) a key second moment in the cache that
    ``interp run rome`` reads; under ``torchrun`` the ranks share the texts (see :func:`layer_stats`)."""
    import argparse
    import sys
    import time

    from interp.model import load_model

    ap = argparse.ArgumentParser(prog="python -m interp.rome.layer_stats", description=main.__doc__.split(";")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layer", type=int, default=None, help="the MLP layer (default: the model's ROME layer)")
    ap.add_argument("--corpus", default="wikipedia", help="wikipedia, generic, model, a text file/folder or hf:NAME")
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--max-tokens", type=int, default=128, help="tokens kept per text")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--no-cache", action="store_true", help="compute even when the cache holds it (and do not store it)")
    a = ap.parse_args(argv)
    world = distributed.join(a.device)
    try:
        try:  # rank 0 releases the other ranks however it ends, its own loading included
            model = load_model(a.model, device=a.device, dtype=a.dtype)
            if not world.is_main:  # rank 0 decides (the cache may already hold it) and dispatches the pass
                distributed.serve(model)
                return 0
            from interp.rome.pipeline import default_layer

            layer = default_layer(model) if a.layer is None else a.layer
            t = time.perf_counter()
            stat = layer_stats(model, layer, a.corpus, a.tokens, a.max_tokens, batch_size=a.batch_size,
                               use_cache=not a.no_cache)
        finally:
            distributed.release()
    except InterpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.finish(world)
    where = f"cached at {stat.path}" if not a.no_cache else "not cached (--no-cache)"
    print(f"layer {layer}: {stat.n_tokens} tokens from {stat.n_samples} texts in {time.perf_counter() - t:.1f}s "
          f"over {world.size} rank(s), {'read from the cache' if stat.cached else 'computed'}; {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
