"""The covariance statistic C = E[k k^T] of MLP keys at one layer, streamed and cached on disk.

As in ROME's ``layer_stats.py``, the second moment is accumulated batch by batch over every token
of a text corpus and cached under ``interp.loading.cache_dir()/stats/`` with a key naming exactly
what it was computed from: model weight hash, layer, corpus id, sample count, token cap and dtype.
Snapshots at growing sample counts are kept so the stability of C^-1 can be reported.

Corpora (``corpus`` parameter): ``"model"`` (default, offline) samples texts from the model itself
(a seeded starter word, continued greedily); ``"generic"`` uses the packaged generic paragraphs; a
path names a user's text file or folder; ``"hf:NAME[:CONFIG]"`` loads a Hugging Face dataset's
``text`` column (needs the network or a local datasets cache).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from jaxtyping import Float

import interp
from interp import corpus as corpus_mod
from interp.errors import InterpError
from interp.loading import cache_dir
from interp.model import Model
from interp.rome.compute_u import STARTERS, key_hook


@dataclass
class Corpus:
    """Token sequences for the statistic and the id that names them in the cache key."""

    corpus_id: str
    tokens: list[list[int]]
    description: str


@dataclass
class LayerStats:
    """A second-moment statistic of keys.

    Attributes:
        mom2: ``E[k k^T]`` over all tokens seen, float64.
        n_tokens: tokens accumulated.
        n_samples: texts accumulated.
        snapshots: ``n_samples -> E[k k^T]`` after that many texts (float32).
        key: what the statistic was computed from (the cache key fields).
        path: the cache file.
        cached: whether it was read from the cache.
        description: which text it was computed from.
        snapshot_tokens: ``n_samples -> tokens`` of each snapshot.
    """

    mom2: Float[torch.Tensor, "d_mlp d_mlp"]
    n_tokens: int
    n_samples: int
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    key: dict = field(default_factory=dict)
    path: Optional[Path] = None
    cached: bool = False
    description: str = ""
    snapshot_tokens: dict[int, int] = field(default_factory=dict)


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


def load_corpus(model: Model, corpus: str, n_samples: int, max_tokens: int, seed: int = 0) -> Corpus:
    """Resolve the ``corpus`` parameter to token sequences (see module docstring)."""
    if n_samples < 1 or max_tokens < 2:
        raise InterpError("the covariance corpus needs n_samples >= 1 and max_tokens >= 2")
    if corpus == "model":
        toks = model_sampled_texts(model, n_samples, max_tokens, seed)
        return Corpus(corpus_id(corpus, seed), toks, "text sampled from the model itself (seeded starter word + random word, greedy continuation)")
    if corpus == "generic":
        texts, cid, desc = corpus_mod.generic_texts(), corpus_mod.GENERIC_ID, "packaged generic English paragraphs"
    elif corpus.startswith("hf:"):
        parts = corpus[3:].split(":")
        try:
            import datasets

            ds = datasets.load_dataset(parts[0], parts[1] if len(parts) > 1 else None, split="train", streaming=True)
            texts = []
            for row in ds:
                if len(row.get("text", "").strip()) >= 20:
                    texts.append(row["text"])
                if len(texts) >= n_samples:
                    break
        except Exception as e:  # noqa: BLE001
            raise InterpError(f"cannot load Hugging Face dataset {parts[0]!r} (offline?): {type(e).__name__}: {e}") from e
        cid, desc = corpus, f"Hugging Face dataset {corpus[3:]}"
    else:
        texts = corpus_mod.read_texts(corpus)
        cid, desc = corpus_id(corpus, seed), f"user text {Path(corpus).expanduser().resolve()}"
    toks = [t[:max_tokens] for t in model.encode(texts[:n_samples]) if t]
    return Corpus(cid, toks, desc)


def corpus_id(corpus: str, seed: int = 0) -> str:
    """The id naming a corpus in the cache key, found without reading or generating the texts
    (a user file is named by its path, size and modification time)."""
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


def stats_key(model: Model, layer: int, corpus: str, n_samples: int, max_tokens: int, seed: int = 0) -> dict:
    """The fields that identify a cached statistic."""
    return {
        "stat": "mom2",
        "hook": key_hook(layer).split(".", 2)[-1],
        "weight_hash": model.weight_hash,
        "layer": int(layer),
        "corpus": corpus_id(corpus, seed),
        "n_samples": int(n_samples),
        "max_tokens": int(max_tokens),
        "dtype": str(model.dtype).replace("torch.", ""),
    }


def stats_path(key: dict) -> Path:
    """Where the statistic with ``key`` is cached."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "stats" / f"rome-mom2-L{key['layer']}-{digest}.safetensors"


def _read_cache(path: Path, key: dict) -> Optional[LayerStats]:
    """The cached statistic when its JSON names ``key`` and the tensor file's digest matches (checked
    before the tensor file is parsed; nothing is unpickled)."""
    from safetensors.torch import load_file

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
        snaps = {int(n): t[f"snapshot_{n}"] for n in meta["snapshots"]}
        return LayerStats(t["mom2"], int(meta["n_tokens"]), int(meta["n_samples"]), snaps, key, path, True,
                          meta.get("description", ""), {int(k): int(v) for k, v in meta.get("snapshot_tokens", {}).items()})
    except Exception:  # noqa: BLE001 - an unreadable cache entry is recomputed
        return None


def _write_cache(stat: LayerStats) -> None:
    """Store ``stat`` as safetensors (tensors) and JSON (key, counts, the tensor file's digest), atomically."""
    from safetensors.torch import save_file

    from interp.store import atomic_write, sha256_file, write_text

    path = stat.path
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"mom2": stat.mom2.contiguous(), **{f"snapshot_{n}": s.contiguous() for n, s in stat.snapshots.items()}}
    atomic_write(path, lambda t: save_file(tensors, str(t)))
    meta = {"key": stat.key, "sha256": sha256_file(path), "n_tokens": stat.n_tokens, "n_samples": stat.n_samples,
            "snapshots": sorted(stat.snapshots), "snapshot_tokens": {str(k): v for k, v in stat.snapshot_tokens.items()},
            "description": stat.description}
    write_text(path.with_suffix(".json"), json.dumps(meta, indent=1))


def snapshot_counts(n_samples: int, n_snapshots: int = 6) -> list[int]:
    """Sample counts at which the running statistic is kept: halvings down from ``n_samples``."""
    return sorted({max(1, n_samples >> i) for i in range(n_snapshots)})


def layer_stats(
    model: Model,
    layer: int,
    corpus: str = "model",
    n_samples: int = 256,
    max_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 16,
    use_cache: bool = True,
    n_snapshots: int = 6,
) -> LayerStats:
    """Stream ``E[k k^T]`` of the MLP keys at ``layer`` over every token of a corpus (cached).

    Args:
        model: the model handle.
        layer: the MLP layer.
        corpus: ``"model"``, ``"generic"``, a text file or folder, or ``"hf:NAME[:CONFIG]"``.
        n_samples: texts to use (fewer if the corpus holds fewer).
        max_tokens: tokens kept per text.
        seed: seeds model-sampled text.
        batch_size: texts per forward pass.
        use_cache: read and write the on-disk cache.
        n_snapshots: running-moment snapshots kept for the convergence report.

    Returns:
        The statistic (from the cache when one with the same key exists); ``key["description"]``
        says which text it was computed from.
    """
    if n_samples < 1 or max_tokens < 2:
        raise InterpError("the covariance corpus needs n_samples >= 1 and max_tokens >= 2")
    if not (0 <= layer < model.n_layers):
        raise InterpError(f"layer {layer} out of range for {model.n_layers} layers")
    key = stats_key(model, layer, corpus, n_samples, max_tokens, seed)
    path = stats_path(key)
    if use_cache:
        cached = _read_cache(path, key)
        if cached is not None:
            return cached
    texts = load_corpus(model, corpus, n_samples, max_tokens, seed)
    tokens = texts.tokens[:n_samples]
    n = len(tokens)
    hook = key_hook(layer)
    d = model.d_mlp
    acc = torch.zeros(d, d, dtype=torch.float64)
    count = 0
    snaps: dict[int, torch.Tensor] = {}
    snap_tokens: dict[int, int] = {}
    marks = snapshot_counts(n, n_snapshots)
    chunk = max(batch_size, 1) * 4
    start = 0
    while start < n:
        stop_at = min([n, start + chunk] + [m for m in marks if m > start])
        cap = interp.capture(
            model, tokens[start:stop_at], hooks=[hook], positions="all", batch_size=batch_size,
            stop_at_layer=layer + 1, progress=False,
        )
        for k in cap.acts[hook]:
            k = k.double()
            acc += k.T @ k
            count += k.shape[0]
        start = stop_at
        if start in marks:
            snaps[start] = (acc / count).float()
            snap_tokens[start] = count
    mom2 = acc / count
    stat = LayerStats(mom2, count, n, snaps, key, path, False, texts.description, snap_tokens)
    if use_cache:
        _write_cache(stat)
    return stat


def inverse_covariance(mom2: Float[torch.Tensor, "d_mlp d_mlp"], ridge: float = 0.0) -> Float[torch.Tensor, "d_mlp d_mlp"]:
    """C^-1, with ``ridge * mean(diag C)`` added to the diagonal first (0 = ROME's plain inverse)."""
    c = mom2.double()
    if ridge > 0:
        c = c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype)
    try:
        return torch.linalg.inv(c)
    except RuntimeError as e:
        raise InterpError(f"the key second moment is singular ({e}); use more samples or a ridge > 0") from e


def inverse_convergence(
    stat: LayerStats, probe_keys: Float[torch.Tensor, "n d_mlp"], ridge: float = 0.0
) -> list[dict]:
    """How C^-1 settles as samples grow, measured against the full-sample estimate.

    Args:
        stat: the statistic with its snapshots.
        probe_keys: keys (e.g. the requests' k̄) whose ROME directions ``C^-1 k`` are compared.
        ridge: as in :func:`inverse_covariance`.

    Returns:
        One row per snapshot: ``n_samples``, the relative Frobenius distance of C^-1 to the final
        C^-1, the mean cosine of ``C^-1 k`` with the final direction, and the condition number.
    """
    final = inverse_covariance(stat.mom2, ridge)
    u_final = probe_keys.double() @ final
    rows = []
    for n, m in sorted(stat.snapshots.items()):
        inv = inverse_covariance(m, ridge)
        u = probe_keys.double() @ inv
        cos = torch.nn.functional.cosine_similarity(u, u_final, dim=-1)
        ev = torch.linalg.eigvalsh(m.double())
        rows.append(
            {
                "n_samples": int(n),
                "n_tokens": int(stat.snapshot_tokens.get(n, 0)),
                "inverse_rel_change": float((inv - final).norm() / final.norm()),
                "direction_cosine_mean": float(cos.mean()),
                "direction_cosine_min": float(cos.min()),
                "condition_number": float(ev.max() / ev.min().clamp_min(1e-30)),
            }
        )
    return rows

