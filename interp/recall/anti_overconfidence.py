"""Anti-overconfidence in the final layer(s): first-position heads that write frequent tokens.

For each head of the last layer(s), at the last position of the task prompts:

* ``attn_first``: attention paid to position 0 (the attention sink: the BOS token where the model
  prepends one, the prompt's first token otherwise, as for SmolLM2); a head with a mean above
  :data:`FIRST_POSITION` "attends mostly to the first position";
* ``dla_answer``: direct logit attribution onto the correct answer (negative = suppresses it);
* ``freq_spearman`` / ``freq_pearson``: correlation between the logits ``l = W_U^T (w * o / s)``
  that the head's mean output ``o`` adds (final norm frozen at its mean scale ``s``,
  :mod:`interp.recall.attribution`) and the log token frequency ``log c_t``, over the tokens ``t``
  with ``c_t > 0`` only (positive = it pushes towards frequent tokens). Spearman is the headline:
  it does not assume the relation is linear and no handful of extreme tokens decides it.

The same is reported for the summed output of the heads that attend mostly to the first position,
for each final MLP's mean output and for the intercepts of its decomposition
(:mod:`interp.recall.mlp_decomposition`). Token counts come from :func:`interp.frequency.token_frequency`
(a real corpus by default; the model's own mean prediction only when asked).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from scipy.stats import rankdata
from interp.progress import track

from interp.capture import capture
from interp.errors import InterpError
from interp.model import Model
from interp.recall.activations import RecallActivations
from interp.recall.argument_heads import head_outputs
from interp.recall.attribution import component_logits, direct_logit_attribution, final_norm_linear
from interp.scoring import next_token_nll
from interp.tail import lm_head


def text_tokens(model: Model, texts: Sequence[str], max_tokens: int = 256, tail: Optional[Any] = None) -> list[list[int]]:
    """``texts`` tokenised as the perplexity measurements cut them: each to ``max_tokens``, those
    shorter than 2 tokens left out; checked against ``tail``'s sequences when one is given."""
    toks = [t for t in (t[:max_tokens] for t in model.encode(list(texts))) if len(t) >= 2]
    if not toks:
        raise InterpError("no text of at least 2 tokens to measure")
    if tail is not None and tail.seqs != toks:
        raise InterpError("the tail cache holds other texts than the ones measured")
    return toks


def text_nll(
    model: Model, texts: Sequence[str], batch_size: int = 8, max_tokens: int = 256, tail: Optional[Any] = None,
) -> tuple[Float[torch.Tensor, "text"], Int[torch.Tensor, "text"]]:
    """Each text's summed next-token negative log-likelihood and its number of scored tokens.

    Runs under whatever hooks are active; only the scored tokens' log-probabilities are formed, a
    chunk of positions at a time. Per text, so that a perplexity difference can be given a standard
    error over texts (:func:`interp.recall.mitigation.perplexity_cost`).

    Args:
        model: the model.
        texts: paragraphs of generic text.
        batch_size: texts per forward pass.
        max_tokens: each text is cut to this many tokens.
        tail: an :class:`interp.tail.TailCache` of the same texts (cut the same way): only its last
            blocks are re-run (exact when the active hooks act in none of the earlier blocks).

    Returns:
        ``(nll, n_scored)``, one entry per text (float64 sums).
    """
    toks = text_tokens(model, texts, max_tokens, tail)
    hook = model.hook("resid_post", model.n_layers - 1)

    def unembed(x: torch.Tensor) -> torch.Tensor:  # the model's own final norm (unless the tail applied it) and LM head
        x = x.to(model.device, model.dtype)
        return lm_head(model, x if tail is not None else model.final_norm(x))

    nll = torch.zeros(len(toks), dtype=torch.float64)
    n = torch.zeros(len(toks), dtype=torch.long)
    for a in track(range(0, len(toks), batch_size), desc="generic text", unit="batch", disable=len(toks) <= batch_size):
        chunk = toks[a : a + batch_size]
        if tail is not None:
            finals = tail.hidden(rows=range(a, a + len(chunk)))
        else:
            finals = capture(model, chunk, hooks=[hook], positions="all", batch_size=batch_size, progress=False).acts[hook]
        for j, x in enumerate(next_token_nll(unembed, finals, chunk)):
            nll[a + j] = float(x.double().sum())
            n[a + j] = len(x)
    return nll, n


def next_token_stats(
    model: Model, texts: Sequence[str], batch_size: int = 8, max_tokens: int = 256, tail: Optional[Any] = None,
    mean_distribution: bool = True,
) -> tuple[Optional[Float[torch.Tensor, "d_vocab"]], float, int]:
    """The model's mean next-token distribution over ``texts`` and its perplexity on them.

    Runs under whatever hooks are active (so it also measures an ablated model).

    Args:
        model, texts, batch_size, max_tokens, tail: as for :func:`text_nll`.
        mean_distribution: also average the next-token distribution (False: perplexity alone,
            without exponentiating and summing every position's distribution; ``mean_probs`` is
            then None).

    Returns:
        ``(mean_probs, perplexity, n_tokens_scored)``.
    """
    if not mean_distribution:  # only the scored tokens' log-probabilities, a chunk of positions at a time
        nll, n = text_nll(model, texts, batch_size, max_tokens, tail)
        return None, float(np.exp(float(nll.sum()) / int(n.sum()))), int(n.sum())
    toks = text_tokens(model, texts, max_tokens, tail)
    mean = torch.zeros(model.d_vocab, dtype=torch.float64)
    nll, count = 0.0, 0
    for a in track(range(0, len(toks), batch_size), desc="generic text", unit="batch", disable=len(toks) <= batch_size):
        chunk = toks[a : a + batch_size]
        if tail is not None:
            logits = tail.logits("all", rows=range(a, a + len(chunk)))
        else:
            logits = capture(model, chunk, positions="all", logits=True, batch_size=batch_size, progress=False).logits
        for t, lg in zip(chunk, logits):
            logp = torch.log_softmax(lg.float(), -1)
            mean += logp.exp().sum(0).double()
            nll -= float(logp[:-1].gather(1, torch.tensor(t[1:])[:, None]).sum())
            count += len(t) - 1
    n_pos = sum(len(t) for t in toks)
    return (mean / n_pos).float(), float(np.exp(nll / count)), count


def log_frequency(freq: Any) -> tuple[Float[torch.Tensor, "d_vocab"], torch.Tensor]:
    """``log counts`` over the vocabulary and the mask of tokens that occur in the frequency source.

    Args:
        freq: an :class:`interp.frequency.TokenFrequency` (``.counts``, ``.occurs``).
    """
    counts = torch.as_tensor(freq.counts).double()
    occurs = torch.as_tensor(freq.occurs).bool() & (counts > 0)
    return counts.clamp_min(1e-300).log().float(), occurs


def frequency_correlation(logits: Float[torch.Tensor, "d_vocab"], freq: Any) -> tuple[float, float]:
    """Spearman and Pearson correlation of a component's logits with log token frequency.

    Both are taken over the tokens that occur in the frequency source only: tokens never seen share
    one (undefined) frequency and would otherwise dominate the correlation.

    Returns:
        ``(spearman, pearson)``; NaN when fewer than 3 tokens occur or a side is constant.
    """
    lf, occ = log_frequency(freq)
    n = min(len(logits), len(lf))
    occ = occ[:n]
    if int(occ.sum()) < 3:
        return float("nan"), float("nan")
    x = logits[:n][occ].double().numpy()
    y = lf[:n][occ].double().numpy()
    if np.std(x) == 0 or np.std(y) == 0:
        return float("nan"), float("nan")
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1]), float(np.corrcoef(x, y)[0, 1])


FIRST_POSITION = 0.5  # a head "attends mostly to the first position" above this mean attention


def anti_overconfidence_table(
    model: Model,
    acts: RecallActivations,
    freq: Any,
    layers: Sequence[int],
    intercepts: Optional[dict[tuple[str, int], Float[torch.Tensor, "d_model"]]] = None,
    rows: Optional[Sequence[int]] = None,
) -> pd.DataFrame:
    """First-position attention, answer attribution and frequency correlation of final components.

    Args:
        model: the model.
        acts: captured activations.
        freq: token frequency (:func:`interp.frequency.token_frequency`).
        layers: the last layer(s) to examine.
        intercepts: ``(relation, layer)`` -> the MLP decomposition's intercept.
        rows: prompts to average over (default: all).

    Returns:
        One row per component: ``kind`` is ``head``, ``first_position_heads`` (the summed output
        of the layer's heads whose mean attention to position 0 exceeds :data:`FIRST_POSITION`),
        ``mlp`` (the mean MLP output) or ``mlp_intercept`` (one per relation, and their mean as
        relation ``"all"``); columns ``layer``, ``name``, ``relation``, ``attn_first``,
        ``first_position``, ``dla_answer``, ``freq_spearman``, ``freq_pearson``, ``output_norm``.
    """
    rows = list(range(len(acts.prompts))) if rows is None else list(rows)
    sub = acts.subset(rows)
    ans = torch.tensor(sub.prompts.answer_ids)
    s = final_norm_linear(model).scale(sub.final_resid)
    s_mean = s.mean()
    heads = head_outputs(model, sub)
    nan = float("nan")
    out = []

    def row(kind: str, L: int, name: str, vec: torch.Tensor, dla: float, attn: float = nan, first: Any = None,
            norm: float = nan, relation: str = "all") -> dict[str, Any]:
        sp, pe = frequency_correlation(component_logits(model, vec, s_mean), freq)
        return {"kind": kind, "layer": L, "name": name, "relation": relation, "attn_first": attn, "first_position": first,
                "dla_answer": dla, "freq_spearman": sp, "freq_pearson": pe, "output_norm": norm}

    for L in layers:
        j = sub.layer_index(L)
        dla = direct_logit_attribution(model, heads[:, j], sub.final_resid, ans).mean(0)
        attn = sub.attn_first[:, j].mean(0)
        for h in range(model.n_heads):
            out.append(row("head", L, f"{L}.{h}", heads[:, j, h].mean(0), float(dla[h]), float(attn[h]),
                           bool(attn[h] > FIRST_POSITION), float(heads[:, j, h].norm(dim=-1).mean())))
        first = [h for h in range(model.n_heads) if attn[h] > FIRST_POSITION]
        if first:
            summed = heads[:, j, first].sum(1)
            out.append(row("first_position_heads", L, f"{L}.[{','.join(map(str, first))}]", summed.mean(0),
                           float(dla[first].sum()), float(attn[first].mean()), True, float(summed.norm(dim=-1).mean())))
        mlp = sub.mlp_out[:, j].float()
        out.append(row("mlp", L, f"mlp{L}", mlp.mean(0), float(direct_logit_attribution(model, mlp, sub.final_resid, ans).mean()),
                       norm=float(mlp.norm(dim=-1).mean())))
        mine = {r: b for (r, l2), b in (intercepts or {}).items() if l2 == L}
        for rel, b in list(mine.items()) + ([("all", torch.stack(list(mine.values())).mean(0))] if mine else []):
            idx = torch.tensor(sub.prompts.rows(rel)) if rel != "all" else torch.arange(len(sub.prompts))
            if not len(idx):
                continue
            dla_b = direct_logit_attribution(model, b.float().expand(len(idx), -1), sub.final_resid[idx], ans[idx]).mean()
            out.append(row("mlp_intercept", L, f"mlp{L} intercept", b.float(), float(dla_b), norm=float(b.norm()), relation=rel))
    return pd.DataFrame(out)
