"""The key side of ROME: generated prefixes, the unprefixed key k^u and the prefixed key k̄.

The key of a request is the MLP hidden activation that feeds the output matrix
(``blocks.{L}.mlp.hook_post``) at the subject's last token. ROME averages it over the prompt
preceded by short texts the model writes itself by top-5 sampling (its "context templates": the
bare prompt plus 10 prefixes of 5 tokens and 10 of 10 tokens, each followed by ``". "``), giving
k̄ = mean_c k_c, but takes the value side at the bare prompt, k^u. Yang et al. (2024) trace the
collapse to this mix. The update direction is u = C^-1 k̄ (:func:`interp.rome.rome_main.rome_direction`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from jaxtyping import Float

import interp
from interp import distributed
from interp.errors import InterpError
from interp.model import Model
from interp.rome.requests import EditRequest, subject_last_position

PREFIX_LENGTHS: tuple[tuple[int, int], ...] = ((5, 10), (10, 10))
ROME_STARTERS = ("The", "Therefore", "Because", "I", "You")
STARTERS = (
    "The", "Therefore", "Because", "I", "You", "When", "After", "In", "She", "He", "We", "They", "It",
    "This", "One", "My", "Our", "Some", "Many", "Yesterday", "Today", "If", "Although", "While",
    "Every", "A", "There", "Most", "People", "Once", "Last", "Before", "During", "Since", "However",
    "Perhaps", "According", "At", "For", "On",
)


def key_hook(layer: int) -> str:
    """The hook holding ROME's key: the MLP hidden activation feeding the output matrix."""
    return f"blocks.{layer}.mlp.hook_post"


def value_hook(layer: int) -> str:
    """The hook holding the MLP output-matrix result ``W k + b`` (before any post-MLP norm)."""
    return f"blocks.{layer}.mlp.out.hook_out"


def sample_top_k(
    model: Model, starters: Sequence[str], n_tokens: int, top_k: int = 5, generator: Optional[torch.Generator] = None
) -> list[list[int]]:
    """Continue each starter by top-k sampling (ROME's ``generate_fast``) to ``n_tokens`` tokens.

    At each step the next token is drawn from the ``top_k`` most likely tokens, their probabilities
    renormalised. ``n_tokens`` counts the starter's tokens and not the BOS token.

    Returns:
        Per starter, its token ids (starter included, BOS excluded).
    """
    bos = 1 if model.prepend_bos else 0
    out: list[list[int]] = []
    groups: dict[int, list[int]] = {}
    enc = [tuple(model.encode(s)) for s in starters]
    for i, e in enumerate(enc):
        groups.setdefault(len(e), []).append(i)  # one batch per starter length: no padding
    res: dict[int, list[int]] = {}
    for rows in groups.values():
        ids = torch.tensor([list(enc[r]) for r in rows], dtype=torch.long, device=model.device)
        with torch.no_grad():
            while ids.shape[1] - bos < n_tokens:
                logits = model.bridge(ids)[:, -1].float()
                probs = logits.softmax(-1)
                top = probs.topk(top_k, dim=-1)
                pick = torch.multinomial((top.values / top.values.sum(-1, keepdim=True)).cpu(), 1, generator=generator)
                ids = torch.cat([ids, top.indices.gather(1, pick.to(top.indices.device))], dim=1)
        for j, r in enumerate(rows):
            res[r] = ids[j, bos:].tolist()
    out = [res[i] for i in range(len(starters))]
    return out


def generate_prefixes(
    model: Model, lengths: Sequence[Sequence[int]] = PREFIX_LENGTHS, seed: int = 0, top_k: int = 5
) -> list[str]:
    """Short texts the model writes itself, to put before a prompt (ROME's context templates).

    As in the released ROME code: for each ``(length, count)``, ``count // 5`` continuations of each of
    the starters ``"The", "Therefore", "Because", "I", "You"`` (the first ``count % 5`` starters
    get one more), sampled top-k (``top_k = 5``) to ``length`` tokens in all, seeded; braces and
    newlines are removed and each ends in ``". "``.

    Args:
        model: the model that writes the prefixes.
        lengths: ``(n_tokens, count)`` pairs; ROME uses 10 of 5 tokens and 10 of 10 tokens.
        seed: seeds the sampling.
        top_k: tokens sampled from at each step.

    Returns:
        The prefixes, shortest first.
    """
    g = torch.Generator().manual_seed(int(seed))
    out: list[str] = []
    for n_tok, count in lengths:
        if n_tok < 2:
            raise InterpError(f"prefix length must be at least 2 tokens, got {n_tok}")
        if count < 1:
            raise InterpError(f"prefix count must be at least 1, got {count}")
        starters = [ROME_STARTERS[i % len(ROME_STARTERS)] for i in range(int(count))]
        for ids in sample_top_k(model, starters, int(n_tok), top_k, g):
            text = model.tokenizer.decode(ids).replace("{", " ").replace("}", " ").replace("\n", " ")
            out.append(" ".join(text.split()) + ". ")
    return out


@dataclass
class RequestKeys:
    """Keys of a batch of requests at one layer.

    Attributes:
        k_u: unprefixed keys, bare prompt.
        k_bar: prefixed keys, averaged over the contexts (bare prompt included when asked).
        k_ctx: the key under each context ``[n, context, d_mlp]``.
        w_k_u: the output-matrix result at the bare prompt, ``W k^u + b``.
        w_k_bar: the average of ``W k + b`` over the contexts (``W k̄ + b``).
        positions: subject's last-token position in the bare prompt.
        contexts: the contexts used for k̄ (``""`` is the bare prompt).
    """

    k_u: Float[torch.Tensor, "n d_mlp"]
    k_bar: Float[torch.Tensor, "n d_mlp"]
    k_ctx: Float[torch.Tensor, "n context d_mlp"]
    w_k_u: Float[torch.Tensor, "n d_model"]
    w_k_bar: Float[torch.Tensor, "n d_model"]
    positions: list[int]
    contexts: list[str]


def compute_keys(
    model: Model,
    requests: Sequence[EditRequest],
    layer: int,
    prefixes: Sequence[str],
    include_bare: bool = True,
    batch_size: int = 32,
    requests_per_chunk: int = 8,
    shard_dir: Optional[Union[str, Path]] = None,
) -> Optional[RequestKeys]:
    """k^u and k̄ of each request at ``layer`` (ROME's ``compute_u`` before the C^-1 step).

    Args:
        model: the model handle.
        requests: the edit requests.
        layer: the edited MLP layer.
        prefixes: generated prefixes (see :func:`generate_prefixes`).
        include_bare: average the bare prompt into k̄ too, as the ROME code does (its context
            templates start with ``"{}"``).
        batch_size: prompts per forward pass.
        requests_per_chunk: requests whose prompts (one per context, plus the bare one) run as one
            chunk of the pass; the chunks are the same however many processes share them, so the
            keys are too.
        shard_dir: a folder for per-chunk files. With it the pass is shared among ``torchrun``
            ranks (:mod:`interp.distributed`: rank 0 dispatches it, every rank takes chunks from a
            shared queue); without it one process runs every chunk in memory.

    Returns:
        The keys, one row per request (None on ranks other than 0).
    """
    if not requests:
        raise InterpError("no requests to compute keys for")
    if not (0 <= layer < model.n_layers):
        raise InterpError(f"layer {layer} out of range for {model.n_layers} layers")
    if requests_per_chunk < 1:
        raise InterpError("requests_per_chunk must be at least 1")
    contexts = ([""] if include_bare else []) + list(prefixes)
    if not contexts:
        raise InterpError("k̄ needs at least one context")
    if shard_dir is not None:
        distributed.dispatch("interp.rome.compute_u:compute_keys", requests=requests, layer=layer, prefixes=prefixes,
                             include_bare=include_bare, batch_size=batch_size, requests_per_chunk=requests_per_chunk,
                             shard_dir=shard_dir)
    all_ctx = [""] + contexts
    toks, pos = [], []
    for r in requests:
        for c in all_ctx:
            ids, p = subject_last_position(model, c, r.prompt, r.subject)
            toks.append(ids)
            pos.append([p])
    hk, hv = key_hook(layer), value_hook(layer)
    n, m = len(requests), len(all_ctx)
    starts = list(range(0, n, requests_per_chunk))

    def compute(j: int) -> dict[str, torch.Tensor]:
        a, b = starts[j] * m, min(starts[j] + requests_per_chunk, n) * m
        cap = interp.capture(model, toks[a:b], hooks=[hk, hv], positions=pos[a:b], batch_size=batch_size,
                             progress=False, stop_at_layer=layer + 1)
        return {"k": cap.acts[hk][:, 0].float(), "v": cap.acts[hv][:, 0].float()}

    key = {"pass": "rome-keys-v1", "model": model.weight_hash, "precision": model.precision, "layer": layer,
           "batch_size": batch_size, "requests_per_chunk": requests_per_chunk,
           "prompts": hashlib.sha256(repr(toks).encode()).hexdigest()[:20]}
    parts = distributed.map_chunks(len(starts), compute, None if shard_dir is None else Path(shard_dir), key,
                                   desc=f"keys L{layer}", schedule="dynamic")
    if parts is None:
        return None
    k = torch.cat([c["k"] for c in parts]).reshape(n, m, -1)
    v = torch.cat([c["v"] for c in parts]).reshape(n, m, -1)
    return RequestKeys(
        k_u=k[:, 0],
        k_bar=k[:, 1:].mean(1),
        k_ctx=k[:, 1:],
        w_k_u=v[:, 0],
        w_k_bar=v[:, 1:].mean(1),
        positions=[pos[i * m][0] for i in range(n)],
        contexts=contexts,
    )
