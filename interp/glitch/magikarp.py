"""Baseline: "Fishing for Magikarp" (Land & Bartolo 2024), its indicator and its own verification.

1. *Reference rows* (:func:`unused_reference_tokens`): tokens known to be unused in training. In
   order of preference: tokens the vocabulary names unused or reserved (``<unused12>``,
   ``<|reserved_special_token_3|>``); embedding rows past the tokenizer's last id (padding rows no
   text can reach); tokens the tokenizer cannot produce from their own text (unreachable); and, only
   when none of these exist, the special tokens the oracle prompt does not use. The source is
   returned with the ids and recorded in every result.
2. *Indicator* (:func:`magikarp_indicator`): for tied embeddings, the cosine distance of each
   unembedding row, with the first principal component of the rows removed, to the mean reference
   row; for untied embeddings (input and output matrices differ), the input embedding's norm. Low
   means "looks under-trained".
3. *Candidates* (:func:`magikarp_candidates`): the lowest 0.5-2% of the vocabulary by the indicator.
4. *Verification* (:func:`magikarp_verify`): the paper's three repetition prompts (a device that
   repeats its input, 20 shots; an assistant asked what the token means; the token repeated 50
   times) with the token put in by id; the score is the largest probability the model gives the
   token where it should come next, over the three prompts, and a token is verified under-trained
   when it is below 0.01. The paper takes that maximum over the first three generated positions; here
   it is read at the first (where the token belongs in all three prompts), one batched forward pass
   per prompt with the shared preamble cached.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float

from interp.capture import capture
from interp.errors import InterpError
from interp.glitch.oracle import RepeatTemplate, token_classes
from interp.model import Model

UNUSED_NAME = re.compile(r"^(<unused\d+>|\[unused\d+\]|<\|reserved_special_token_\d+\|>|<extra_id_\d+>|<\|?unused_?\d+\|?>)$")

#: (name, shots, preamble, input with {token}, completion with {token}) as in the paper's code
VERIFICATION_PROMPTS = (
    ("input_output", 20, "This device repeats its input exactly, as shown in these 100 identical trials.",
     "\nInput: «{token}»\nOutput:", " «{token}»"),
    ("assistant_explain", 0, "This helpful assistant explains what a phrase means, replying with identical responses to "
     "identical questions for reliability.",
     "\nUser: What does 'edslfkj' mean?\nAssistant: 'edslfkj' has no specific meaning I am aware of.\nUser: what does "
     "'{token}' mean?\nAssistant:", " '{token}'"),
    ("repeats", 50, "Below is the output, as you can see it's just giving the same phrase repeated indefinitely:\n",
     "{token}", "{token}"),
)
VERIFY_THRESHOLD = 0.01


def unused_reference_tokens(model: Model, template: Optional[RepeatTemplate] = None) -> tuple[list[int], str]:
    """Known-unused token ids and which kind of reference they are (see module docstring).

    Returns:
        ``(ids, source)`` with source ``named_unused``, ``rows_past_tokenizer``, ``unreachable`` or
        ``special_tokens`` (the last resort).
    """
    tok = model.tokenizer
    V = model.d_vocab
    used = set(template.prefix_ids) | set(template.suffix_ids) if template is not None else set()
    used |= {model.bos_token_id, tok.eos_token_id, model.pad_token_id}
    vocab = tok.get_vocab()
    named = sorted(i for s, i in vocab.items() if UNUSED_NAME.match(s) and i < V and i not in used)
    if named:
        return named, "named_unused"
    n_tok = len(tok)
    if V > n_tok:
        return list(range(n_tok, V)), "rows_past_tokenizer"
    cls = token_classes(model, list(range(V)))
    judged = [t for t, c in enumerate(cls) if c is None]
    texts = tok.batch_decode([[t] for t in judged])
    enc = tok(texts, add_special_tokens=False)["input_ids"]
    unreachable = [t for t, e in zip(judged, enc) if t not in e]
    if unreachable:
        return unreachable, "unreachable"
    special = set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {}) or {})
    return sorted(int(t) for t in special - used if t is not None and 0 <= t < V), "special_tokens"


def embeddings_tied(model: Model) -> bool:
    """Whether the input embedding and the unembedding are the same matrix (compared in the lower of
    their two precisions: the mixed bf16 policy keeps a bf16 copy of a tied unembedding beside the
    float32 embedding, :func:`interp.loading.untie_output_head`)."""
    with torch.no_grad():
        E = model.W_E.detach()
        U = model.W_U.detach().T
        if E.shape != U.shape:
            return False
        low = min((E.dtype, U.dtype), key=lambda d: torch.finfo(d).bits)
        return bool(torch.equal(E.to(low), U.to(low)))


def magikarp_indicator(model: Model, reference: Sequence[int], kind: str = "auto") -> tuple[Float[np.ndarray, "d_vocab"], str]:
    """The under-training indicator of every token (low: candidate).

    Args:
        model: the model handle.
        reference: ids of known-unused tokens (used by the unembedding indicator).
        kind: ``unembed_cosine`` (tied embeddings), ``embed_norm`` (untied) or ``auto``.

    Returns:
        ``([d_vocab] scores, kind used)``.
    """
    if kind == "auto":
        kind = "unembed_cosine" if embeddings_tied(model) else "embed_norm"
    with torch.no_grad():
        if kind == "embed_norm":
            return model.W_E.detach().to("cpu", torch.float32).norm(dim=-1).numpy().astype(np.float64), kind
        if kind != "unembed_cosine":
            raise InterpError(f"unknown Magikarp indicator {kind!r}")
        ref = [int(t) for t in reference]
        if not ref:
            raise InterpError("the Magikarp indicator needs at least one known-unused reference token")
        U = model.W_U.detach().to("cpu", torch.float32).T  # [d_vocab, d_model]
        Uc = U - U.mean(0, keepdim=True)
        _, _, V = torch.linalg.svd(Uc[:: max(1, len(Uc) // 8192)], full_matrices=False)
        pc1 = V[0]
        R = U - (U @ pc1)[:, None] * pc1[None]
        cos = torch.nn.functional.cosine_similarity(R, R[ref].mean(0)[None], dim=1)
    return (1.0 - cos).numpy().astype(np.float64), kind


def magikarp_candidates(scores: Float[np.ndarray, "d_vocab"], share: float = 0.02, among: Optional[Sequence[int]] = None) -> list[int]:
    """The ``share`` (0.5-2% in the paper) of tokens (of ``among``, default all) with the lowest indicator."""
    if not 0 < share <= 1:
        raise InterpError(f"share must be in (0, 1], not {share}")
    ids = np.arange(len(scores)) if among is None else np.asarray(list(among), dtype=int)
    k = max(1, int(round(share * len(ids))))
    return ids[np.argsort(scores[ids], kind="stable")[:k]].tolist()


def _segments(model: Model, text: str, token_id: int) -> list[int]:
    parts = text.split("{token}")
    out: list[int] = []
    for i, p in enumerate(parts):
        if p:
            out += model.encode(p, prepend_bos=False)
        if i < len(parts) - 1:
            out.append(int(token_id))
    return out


def verification_rows(model: Model, prompt: tuple, token_id: int) -> tuple[list[int], list[int]]:
    """``(shared preamble ids, token-specific continuation ids)`` of one verification prompt."""
    _, n, preamble, phrase, completion = prompt
    body = (phrase + completion) * n + phrase + completion[: completion.index("{")]
    pre = model.encode(preamble)
    return pre, _segments(model, body, token_id)


def magikarp_verify(model: Model, token_ids: Sequence[int], *, prompts: Sequence[tuple] = VERIFICATION_PROMPTS,
                    batch_size: int = 16, progress: Optional[bool] = None) -> pd.DataFrame:
    """The paper's verification: the token's probability where it should be repeated, per prompt.

    Args:
        model: the model handle.
        token_ids: the candidates.
        prompts: ``(name, shots, preamble, input, completion)`` (default: the paper's three).
        batch_size: rows per forward pass.
        progress: show a progress bar.

    Returns:
        ``token_id``, ``p_<prompt>`` per prompt, ``max_prob`` and ``verified`` (``max_prob`` below
        :data:`VERIFY_THRESHOLD`).
    """
    ids = [int(t) for t in token_ids]
    out = pd.DataFrame({"token_id": ids})
    if not ids:
        return out.assign(max_prob=[], verified=[])
    for prompt in prompts:
        pre = verification_rows(model, prompt, ids[0])[0]
        rows = [verification_rows(model, prompt, t)[1] for t in ids]
        cap = capture(model, rows, hooks=[], positions="last", prefix=pre, logits=True, batch_size=batch_size,
                      progress=progress, desc=f"magikarp {prompt[0]}")
        logits = cap.logits.reshape(len(ids), -1).to(torch.float32)
        probs = torch.softmax(logits, dim=-1)
        out[f"p_{prompt[0]}"] = probs[torch.arange(len(ids)), torch.as_tensor(ids)].numpy()
    out["max_prob"] = out[[f"p_{p[0]}" for p in prompts]].max(axis=1)
    out["verified"] = out.max_prob < VERIFY_THRESHOLD
    return out
