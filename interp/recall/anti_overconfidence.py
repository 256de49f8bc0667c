"""Anti-overconfidence in the final layer(s): first-position heads that write frequent tokens.

For each head of the last layer(s), at the last position of the task prompts:

* ``attn_first``: attention paid to position 0 (the attention sink: the BOS token where the model
  prepends one, the prompt's first token otherwise, as for SmolLM2);
* ``dla_answer``: direct logit attribution onto the correct answer (negative = suppresses it);
* ``freq_corr``: Pearson correlation, over the vocabulary, between the logits the head's mean output
  adds and the log token frequency (positive = it pushes towards frequent tokens).

The same is reported for each final MLP and for the intercept of its decomposition
(:mod:`interp.recall.mlp_decomposition`). Token frequency is either unigram counts over a given
corpus or, when none is given, the model's own average next-token distribution over generic text
(:func:`interp.corpus.generic_texts`).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from interp.capture import capture
from interp.errors import InterpError
from interp.model import Model
from interp.recall.activations import RecallActivations
from interp.recall.argument_heads import head_outputs
from interp.recall.attribution import component_logits, direct_logit_attribution, final_norm_linear


def next_token_stats(
    model: Model, texts: Sequence[str], batch_size: int = 8, max_tokens: int = 256
) -> tuple[Float[torch.Tensor, "d_vocab"], float, int]:
    """The model's mean next-token distribution over ``texts`` and its perplexity on them.

    Runs under whatever hooks are active (so it also measures an ablated model).

    Args:
        model: the model.
        texts: paragraphs of generic text.
        batch_size: texts per forward pass.
        max_tokens: each text is cut to this many tokens.

    Returns:
        ``(mean_probs, perplexity, n_tokens_scored)``.
    """
    toks = [t[:max_tokens] for t in model.encode(list(texts))]
    toks = [t for t in toks if len(t) >= 2]
    if not toks:
        raise InterpError("no text of at least 2 tokens to measure")
    mean = torch.zeros(model.d_vocab, dtype=torch.float64)
    nll, count = 0.0, 0
    for a in tqdm(range(0, len(toks), batch_size), desc="generic text", unit="batch", disable=len(toks) <= batch_size or os.environ.get("INTERP_PROGRESS", "1") == "0"):
        chunk = toks[a : a + batch_size]
        cap = capture(model, chunk, positions="all", logits=True, batch_size=batch_size, progress=False)
        for t, lg in zip(chunk, cap.logits):
            logp = torch.log_softmax(lg.float(), -1)
            mean += logp.exp().sum(0).double()
            tgt = torch.tensor(t[1:])
            nll -= float(logp[:-1].gather(1, tgt[:, None]).sum())
            count += len(t) - 1
    n_pos = sum(len(t) for t in toks)
    return (mean / n_pos).float(), float(np.exp(nll / count)), count


def token_log_frequency(
    model: Model, texts: Sequence[str], source: str = "model", batch_size: int = 8
) -> Float[torch.Tensor, "d_vocab"]:
    """Log token frequency: unigram counts of ``texts`` (``source="corpus"``, add-one smoothed) or
    the model's average next-token distribution over them (``source="model"``).
    """
    if source == "corpus":
        counts = torch.ones(model.d_vocab, dtype=torch.float64)
        for t in model.encode(list(texts), prepend_bos=False):
            counts += torch.bincount(torch.tensor(t, dtype=torch.long), minlength=model.d_vocab)[: model.d_vocab].double()
        return (counts / counts.sum()).log().float()
    if source == "model":
        mean, _, _ = next_token_stats(model, texts, batch_size)
        return mean.clamp_min(1e-30).log()
    raise InterpError(f"frequency source must be 'model' or 'corpus', not {source!r}")


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else float("nan")


def anti_overconfidence_table(
    model: Model,
    acts: RecallActivations,
    log_freq: Float[torch.Tensor, "d_vocab"],
    layers: Sequence[int],
    intercepts: Optional[dict[int, Float[torch.Tensor, "d_model"]]] = None,
    rows: Optional[Sequence[int]] = None,
) -> pd.DataFrame:
    """First-position attention, answer attribution and frequency correlation of final components.

    Args:
        model: the model.
        acts: captured activations.
        log_freq: log token frequency over the vocabulary.
        layers: the last layer(s) to examine.
        intercepts: layer -> the MLP decomposition's intercept (averaged over relations).
        rows: prompts to average over (default: all).

    Returns:
        One row per component (``kind`` head / mlp / mlp_intercept) with ``layer``, ``name``,
        ``attn_first``, ``dla_answer``, ``freq_corr``, ``output_norm``.
    """
    rows = list(range(len(acts.prompts))) if rows is None else list(rows)
    sub = acts.subset(rows)
    ans = torch.tensor(sub.prompts.answer_ids)
    s = final_norm_linear(model).scale(sub.final_resid)
    s_mean = s.mean()
    heads = head_outputs(model, sub)
    out = []
    for L in layers:
        j = sub.layer_index(L)
        dla = direct_logit_attribution(model, heads[:, j], sub.final_resid, ans).mean(0)
        for h in range(model.n_heads):
            mo = heads[:, j, h].mean(0)
            out.append({"kind": "head", "layer": L, "name": f"{L}.{h}", "attn_first": float(sub.attn_first[:, j, h].mean()),
                        "dla_answer": float(dla[h]), "freq_corr": _corr(component_logits(model, mo, s_mean), log_freq),
                        "output_norm": float(heads[:, j, h].norm(dim=-1).mean())})
        mlp = sub.mlp_out[:, j].float()
        out.append({"kind": "mlp", "layer": L, "name": f"mlp{L}", "attn_first": float("nan"),
                    "dla_answer": float(direct_logit_attribution(model, mlp, sub.final_resid, ans).mean()),
                    "freq_corr": _corr(component_logits(model, mlp.mean(0), s_mean), log_freq),
                    "output_norm": float(mlp.norm(dim=-1).mean())})
        if intercepts and L in intercepts:
            b = intercepts[L].float()
            dla_b = direct_logit_attribution(model, b.expand(len(sub.prompts), -1), sub.final_resid, ans).mean()
            out.append({"kind": "mlp_intercept", "layer": L, "name": f"mlp{L} intercept", "attn_first": float("nan"),
                        "dla_answer": float(dla_b), "freq_corr": _corr(component_logits(model, b, s_mean), log_freq),
                        "output_norm": float(b.norm())})
    return pd.DataFrame(out)
