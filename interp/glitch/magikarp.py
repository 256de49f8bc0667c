"""Baseline: the unembedding indicator of "Fishing for Magikarp" (Land & Bartolo 2024).

Under-trained tokens have unembedding rows that stay close to those of tokens never seen in
training. The indicator removes the first principal component of the unembedding rows (a direction
shared by all tokens), takes the mean row of known-unused tokens as the reference, and scores every
token by its cosine distance to it; the lowest-scoring share of the vocabulary is then checked with
the repeat oracle.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from jaxtyping import Float

from interp.errors import InterpError
from interp.glitch.oracle import RepeatTemplate
from interp.model import Model


def unused_reference_tokens(model: Model, template: Optional[RepeatTemplate] = None) -> list[int]:
    """Known-unused tokens: the tokenizer's special tokens that the oracle prompt does not use."""
    tok = model.tokenizer
    special = set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {}) or {})
    used = set(template.prefix_ids) | set(template.suffix_ids) if template is not None else set()
    used |= {model.bos_token_id, model.tokenizer.eos_token_id, model.pad_token_id}
    return sorted(int(t) for t in special - used if t is not None and 0 <= t < model.d_vocab)


def magikarp_indicator(
    model: Model, reference: Sequence[int]
) -> Float[np.ndarray, "d_vocab"]:
    """Cosine distance of each unembedding row (first principal component removed) to the reference mean.

    Args:
        model: the model handle.
        reference: ids of known-unused tokens.

    Returns:
        ``[d_vocab]`` distances; low means "looks unused" (candidate glitch token).
    """
    ref = [int(t) for t in reference]
    if not ref:
        raise InterpError("the Magikarp indicator needs at least one known-unused reference token")
    with torch.no_grad():
        U = model.W_U.detach().to("cpu", torch.float32).T  # [d_vocab, d_model]
        Uc = U - U.mean(0, keepdim=True)
        _, _, V = torch.linalg.svd(Uc[:: max(1, len(Uc) // 8192)], full_matrices=False)
        pc1 = V[0]
        R = U - (U @ pc1)[:, None] * pc1[None]
        mean_ref = R[ref].mean(0)
        cos = torch.nn.functional.cosine_similarity(R, mean_ref[None], dim=1)
    return (1.0 - cos).numpy().astype(np.float64)


def magikarp_candidates(scores: Float[np.ndarray, "d_vocab"], share: float = 0.02, among: Optional[Sequence[int]] = None) -> list[int]:
    """The ``share`` of tokens (of ``among``, default all) with the lowest indicator."""
    if not 0 < share <= 1:
        raise InterpError(f"share must be in (0, 1], not {share}")
    ids = np.arange(len(scores)) if among is None else np.asarray(list(among), dtype=int)
    k = max(1, int(round(share * len(ids))))
    return ids[np.argsort(scores[ids], kind="stable")[:k]].tolist()
