"""Collapse detection: perplexity of fixed texts before and after an edit.

Two reference sets, fixed before any edit: natural text (by default the held-out split of the
packaged Wikipedia lead sections, ``interp.corpus.natural_texts("wikipedia", "heldout")``; the
results call this set ``generic``) and the unedited model's own greedy generations (the paper's
ME-PPL idea: text the model itself found likely). An edit collapses the model when the perplexity
ratio (after / before) exceeds a threshold; the threshold is reported with the gap in the ratio
distribution that justifies it (:func:`collapse_threshold_report`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

import interp
from interp import corpus as corpus_mod
from interp.errors import InterpError
from interp.model import Model
from interp.scoring import next_token_nll
from interp.tail import TailCache, lm_head, tail_supported


@dataclass
class ReferenceTexts:
    """Token sequences whose perplexity tracks collapse.

    Attributes:
        generic: generic paragraphs, truncated.
        generations: prompt + the unedited model's greedy continuation.
        generation_prompt_lengths: tokens of each generation's prompt (not scored).
    """

    generic: list[list[int]]
    generations: list[list[int]]
    generation_prompt_lengths: list[int]


def reference_texts(
    model: Model, n_generic: int = 8, max_tokens: int = 48, n_generations: int = 8, prompt_tokens: int = 6, gen_tokens: int = 24,
    texts: Optional[Sequence[str]] = None,
) -> ReferenceTexts:
    """Fix the natural texts and generate the model's own texts (before any edit).

    Natural texts are the first ``n_generic`` of ``texts`` (default: the packaged generic
    paragraphs); generation prompts are the first ``prompt_tokens`` tokens of the next
    ``n_generations`` texts.
    """
    texts = list(texts) if texts is not None else corpus_mod.generic_texts()
    if n_generic + n_generations > len(texts):
        raise InterpError(f"only {len(texts)} reference texts; asked for {n_generic} + {n_generations}")
    generic = [t[:max_tokens] for t in model.encode(texts[:n_generic])]
    prompts = [t[:prompt_tokens] for t in model.encode(texts[n_generic : n_generic + n_generations])]
    gens = interp.greedy_generate(model, prompts, max_new_tokens=gen_tokens, stop_at_eos=False, desc="own text") if prompts else []
    return ReferenceTexts(generic, [p + g for p, g in zip(prompts, gens)], [len(p) for p in prompts])


def token_nll(
    model: Model, texts: Sequence[Sequence[int]], score_from: Optional[Sequence[int]] = None, batch_size: int = 16,
    tail: Optional[TailCache] = None, unembed_chunk: int = 512,
) -> list[float]:
    """Mean next-token negative log-likelihood of each text.

    Args:
        model: the model handle (edited or not).
        texts: token id lists.
        score_from: per text, the first position whose token is scored (default 1: every token
            after the first); a prefix or generation prompt is skipped this way.
        batch_size: texts per forward pass.
        tail: a :class:`~interp.tail.TailCache` of exactly ``texts``, whose start block is at or
            after every block the active edit changes: only the blocks from there on are run.
        unembed_chunk: scored positions unembedded per product (bounds the logits held at once).

    Returns:
        One mean NLL (nats per token) per text.
    """
    if not texts:
        return []
    starts = list(score_from) if score_from is not None else [1] * len(texts)
    for ids, s in zip(texts, starts):
        if max(1, int(s)) >= len(ids):
            raise InterpError("a perplexity text has nothing to score after its prompt")
    if tail is not None:
        if tail.seqs != [list(map(int, t)) for t in texts]:
            raise InterpError("the tail cache holds other texts than the ones scored")
        finals, unembed = tail.hidden(), lambda x: lm_head(model, x)
    else:
        hook = model.hook("resid_post", model.n_layers - 1)
        finals = interp.capture(model, list(texts), hooks=[hook], positions="all", batch_size=batch_size, progress=False).acts[hook]
        unembed = model.unembed
    nll = next_token_nll(lambda x: unembed(x.to(model.device, model.dtype)), finals, texts, starts, unembed_chunk)
    return [float(x.mean()) for x in nll]


def perplexity(nlls: Sequence[float]) -> float:
    """exp of the mean per-text NLL."""
    return float(math.exp(float(np.mean(nlls)))) if len(nlls) else float("nan")


def is_collapse(ppl_ratio: float, threshold: float) -> bool:
    """Whether an edit collapsed the model: its perplexity ratio exceeds ``threshold``."""
    return bool(ppl_ratio > threshold or not np.isfinite(ppl_ratio))


def collapse_threshold_report(ratios: Sequence[float], threshold: float) -> dict:
    """The ratio distribution around the threshold: how many edits fall on each side, the largest
    ratio below it and the smallest above it, and the widest gap in log-ratio (a natural cut)."""
    r = np.sort(np.asarray([x for x in ratios if np.isfinite(x)], dtype=float))
    below, above = r[r <= threshold], r[r > threshold]
    out = {
        "threshold": float(threshold),
        "n_below": int(len(below)),
        "n_above": int(len(above)) + int(sum(not np.isfinite(x) for x in ratios)),
        "max_ratio_below": float(below.max()) if len(below) else float("nan"),
        "min_ratio_above": float(above.min()) if len(above) else float("nan"),
        "median_ratio": float(np.median(r)) if len(r) else float("nan"),
    }
    if len(r) > 1:
        lr = np.log(r)
        gaps = np.diff(lr)
        g = int(np.argmax(gaps))
        out.update(widest_gap_low=float(r[g]), widest_gap_high=float(r[g + 1]), widest_gap_factor=float(np.exp(gaps[g])))
    return out


@dataclass
class ReferencePerplexity:
    """The reference texts, their prefixed copies, and the unedited perplexities of both.

    Attributes:
        texts: the bare reference texts.
        prefixed: ``(generic, generic_score_from, own, own_score_from)`` behind a seeded prefix each.
        base: unedited perplexity: ``generic``, ``own``, ``generic_prefixed``, ``own_prefixed``.
    """

    texts: ReferenceTexts
    prefixed: tuple[list[list[int]], list[int], list[list[int]], list[int]]
    base: dict[str, float]


def prefixed_texts(model: Model, ref: ReferenceTexts, prefixes: Sequence[str], seed: int):
    """Reference texts behind a seeded random prefix each, and where their scored part starts."""
    import random

    rng = random.Random(seed)
    strip = 1 if model.prepend_bos else 0
    gen_t, gen_s, own_t, own_s = [], [], [], []
    for ids in ref.generic:
        p = model.encode(rng.choice(list(prefixes)))
        gen_t.append(p + ids[strip:])
        gen_s.append(len(p) + 1)
    for ids, pl in zip(ref.generations, ref.generation_prompt_lengths):
        p = model.encode(rng.choice(list(prefixes)))
        own_t.append(p + ids[strip:])
        own_s.append(len(p) + pl - strip)
    return gen_t, gen_s, own_t, own_s


def reference_perplexity(
    model: Model, prefixes: Sequence[str], n_generic: int, max_tokens: int, n_generations: int, gen_tokens: int, seed: int = 0,
    texts: Optional[Sequence[str]] = None,
) -> ReferencePerplexity:
    """Fix the reference texts (bare and prefixed) and measure their unedited perplexity."""
    ref = reference_texts(model, n_generic, max_tokens, n_generations, 6, gen_tokens, texts=texts)
    pref = prefixed_texts(model, ref, prefixes, seed)
    return ReferencePerplexity(ref, pref, {
        "generic": perplexity(token_nll(model, ref.generic)),
        "own": perplexity(token_nll(model, ref.generations, ref.generation_prompt_lengths)),
        "generic_prefixed": perplexity(token_nll(model, pref[0], pref[1])),
        "own_prefixed": perplexity(token_nll(model, pref[2], pref[3])),
    })


def reference_tails(model: Model, ref: ReferencePerplexity, layer: int) -> Optional[dict[str, TailCache]]:
    """The reference texts' residual streams entering block ``layer`` (an edit of that layer's MLP
    leaves them unchanged), computed once so that each edit's perplexity runs only the blocks from
    ``layer`` on (:mod:`interp.tail`; None where the model's blocks cannot be resumed, or at layer 0)."""
    if layer < 1 or not tail_supported(model):
        return None
    g_t, _, o_t, _ = ref.prefixed
    sets = {"generic": ref.texts.generic, "own": ref.texts.generations, "generic_prefixed": g_t, "own_prefixed": o_t}
    return {k: TailCache(model, v, layer) for k, v in sets.items()}


def edited_perplexity(model: Model, ref: ReferencePerplexity, prefixed: bool,
                      tails: Optional[dict[str, TailCache]] = None) -> dict[str, float]:
    """Perplexity of the reference texts under the (edited) model, bare or prefixed, beside the
    unedited values, and their ratio ``max(generic after/before, own after/before)``.

    ``tails``: from :func:`reference_tails` at the edited layer (the same numbers, fewer blocks run)."""
    tl = tails or {}
    if prefixed:
        g_t, g_s, o_t, o_s = ref.prefixed
        g = perplexity(token_nll(model, g_t, g_s, tail=tl.get("generic_prefixed")))
        o = perplexity(token_nll(model, o_t, o_s, tail=tl.get("own_prefixed")))
        bg, bo = ref.base["generic_prefixed"], ref.base["own_prefixed"]
    else:
        t = ref.texts
        g = perplexity(token_nll(model, t.generic, tail=tl.get("generic")))
        o = perplexity(token_nll(model, t.generations, t.generation_prompt_lengths, tail=tl.get("own")))
        bg, bo = ref.base["generic"], ref.base["own"]
    return {"ppl_generic_before": bg, "ppl_generic_after": g, "ppl_own_before": bo, "ppl_own_after": o,
            "ppl_ratio": max(g / bg, o / bo)}
