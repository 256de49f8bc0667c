"""Batched greedy generation with a shared-prefix KV cache and early exit per row.

Prompts are left-padded (the bridge derives position ids from the attention mask, so a padded row
generates exactly what it would alone). A row leaves the batch when it emits EOS or when
``stop(row, new_tokens)`` says it is decided, so a vocabulary-wide oracle pays only for the tokens
it needs. Active forward hooks (``with model.hooks(...)``) apply to every step, which is how repairs
and ablations are applied to generation; :func:`interp.current_batch` tells them which pass is
running (the shared prefix, the prompts, or a decoding step) and where each row's last token is.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from interp.progress import track

from interp.capture import BatchInfo, _as_token_lists, _expand_cache, _prefix_cache, running
from interp.errors import InterpError
from interp.model import Model


def greedy_generate(
    model: Model,
    inputs: Union[Sequence[str], Sequence[Sequence[int]]],
    max_new_tokens: int = 10,
    *,
    prefix: Union[None, str, Sequence[int]] = None,
    batch_size: int = 64,
    stop: Optional[Callable[[int, list[int]], bool]] = None,
    stop_at_eos: bool = True,
    progress: Optional[bool] = None,
    desc: str = "generate",
) -> list[list[int]]:
    """Greedy continuations of each prompt (new token ids only, in input order).

    Args:
        model: the model handle.
        inputs: prompts (strings or token id lists); with ``prefix``, the continuations after it.
        max_new_tokens: tokens to generate per prompt at most.
        prefix: shared tokens or text run once; its KV cache is reused by every batch.
        batch_size: prompts per batch.
        stop: ``stop(i, new_ids) -> bool`` ends prompt ``i`` early once its outcome is known.
        stop_at_eos: end a row when it emits the tokenizer's EOS token.
        progress: show a progress bar (default: more than one batch and ``INTERP_PROGRESS`` != 0).
        desc: progress bar label.

    Returns:
        One list of generated token ids per prompt.
    """
    if max_new_tokens < 1:
        raise InterpError("max_new_tokens must be at least 1")
    prefix_ids: list[int] = []
    if prefix is not None:
        prefix_ids = model.encode(prefix) if isinstance(prefix, str) else [int(t) for t in prefix]
    toks = _as_token_lists(model, inputs, has_prefix=bool(prefix_ids))
    n, P = len(toks), len(prefix_ids)
    if any(not t for t in toks):
        raise InterpError("every prompt needs at least one token after the prefix")
    cache0 = _prefix_cache(model, prefix_ids, [])[0] if P else None
    eos = model.tokenizer.eos_token_id if stop_at_eos else None
    order = sorted(range(n), key=lambda i: -len(toks[i]))
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    show = progress if progress is not None else len(batches) > 1
    results: list[list[int]] = [[] for _ in range(n)]
    dev = model.device
    for rows in track(batches, desc=desc, disable=not show, unit="batch"):
        B = len(rows)
        S = max(len(toks[i]) for i in rows)
        ids = torch.full((B, S), model.pad_token_id, dtype=torch.long)
        mask = torch.zeros((B, P + S), dtype=torch.long)
        mask[:, :P] = 1
        for j, i in enumerate(rows):
            t = toks[i]
            ids[j, S - len(t) :] = torch.tensor(t)
            mask[j, P + S - len(t) :] = 1
        mask = mask.to(dev)
        cache = _expand_cache(cache0, B) if P else None
        alive = list(rows)
        step_ids = ids.to(dev)
        with torch.no_grad():
            for step in range(max_new_tokens):
                kw = {"attention_mask": mask, "return_type": "logits_and_cache", "logits_to_keep": 1}
                if cache is not None:
                    kw["past_key_values"] = cache
                # hooks see where each row's last token is: the left-padded prompt's end, then the new token
                info = BatchInfo(mask.sum(1).cpu(), P, torch.full((len(alive),), step_ids.shape[1] - 1),
                                 torch.tensor(alive), "prompt" if step == 0 else "decode")
                with running(info):
                    logits, cache = model.bridge(step_ids, **kw)
                nxt = logits[:, -1].argmax(-1)
                keep = []
                for j, i in enumerate(alive):
                    tid = int(nxt[j])
                    results[i].append(tid)
                    done = (eos is not None and tid == eos) or (stop is not None and stop(i, results[i]))
                    if not done:
                        keep.append(j)
                if not keep or step == max_new_tokens - 1:
                    break
                if len(keep) < len(alive):
                    idx = torch.tensor(keep, device=dev)
                    cache.batch_select_indices(idx)
                    mask = mask[idx]
                    nxt = nxt[idx]
                    alive = [alive[j] for j in keep]
                mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=dev)], dim=1)
                step_ids = nxt[:, None]
    return results
