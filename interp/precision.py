"""Does a model in bfloat16 give the float32 results? The three measurements the analyses rest on.

:func:`compare_precision` loads one model twice, in float32 and in a lower precision, and measures
on the same inputs:

- **answer probabilities** of the packaged recall facts (zero-shot, canonical template): the
  largest and mean absolute difference, and how often the top-1 token agrees;
- **ROME denominators** ``u^T k`` with ``u = C^-1 k̄`` normalised by ``|u|`` (the quantity whose
  near-zero values mark a collapse), for the mixed key ``k^u`` and the consistent key ``k̄``: the
  median and largest relative difference, and whether the collapse-prone requests stay the ones
  with the smallest denominators (Spearman correlation of the two precisions' values);
- **glitch labels** of the repeat oracle on a seeded random vocabulary sample: the share that agree.

Statistics are accumulated in float32 (the key second moment in float64) whatever the model's
dtype, so the differences come from the forward pass alone. :data:`TOLERANCES` states what the
project accepts; ``bench/bench_precision.py`` prints the measured values beside them, and the test
suite checks them on the embedded model.
"""

from __future__ import annotations

import random
import time
from typing import Any, Optional, Sequence

import numpy as np
import torch

from interp.model import Model, load_model

# accepted bf16-vs-fp32 differences (measured values: README "Several processes, GPUs and large models").
# Relative differences of denominators are summarised by their median: the collapse cases are the
# denominators near zero, where a relative difference says nothing (their ranking is checked instead).
TOLERANCES = {
    "answer_prob_max_abs": 0.05,  # largest |p_bf16 - p_fp32| over the facts
    "answer_prob_mean_abs": 0.02,
    "top1_agreement_min": 0.95,  # share of facts whose argmax token agrees
    "denominator_rel_median": 0.05,  # median |d_bf16 - d_fp32| / |d_fp32| (normalised denominators)
    "denominator_spearman_min": 0.95,  # the ranking of requests by denominator is kept
    "glitch_label_agreement_min": 0.95,  # repeat-oracle labels that agree
}


def answer_probabilities(model: Model, max_facts: int, relations: Optional[Sequence[str]] = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Answer probability and argmax token of the packaged facts (zero-shot, canonical template),
    the first ``max_facts`` of each of ``relations`` (default every relation)."""
    from interp.recall.activations import collect_activations
    from interp.recall.facts import build_prompts, load_relations

    ps = build_prompts(model, load_relations(relations), shots=0, templates=[0], max_facts=max_facts)
    acts = collect_activations(model, ps, layers=[model.n_layers - 1])
    assert acts is not None
    return acts.answer_prob.float(), acts.pred


def rome_denominators(model: Model, n_requests: int, cov_tokens: int, prefixes: list[str],
                      layer: Optional[int] = None) -> dict[str, np.ndarray]:
    """Normalised ROME denominators of the first requests, mixed (``k^u``) and consistent (``k̄``),
    with C from ``cov_tokens`` tokens of the packaged Wikipedia text."""
    from interp.rome.compute_u import compute_keys
    from interp.rome.layer_stats import inverse_covariance, layer_stats
    from interp.rome.pipeline import default_layer, select_requests
    from interp.rome.requests import load_requests
    from interp.rome.rome_main import normalized_denominator, rome_direction

    layer = default_layer(model) if layer is None else layer
    reqs = select_requests(load_requests(None), model, n_requests)
    keys = compute_keys(model, reqs, layer, prefixes)
    stat = layer_stats(model, layer, "wikipedia", cov_tokens, 128)
    c_inv = inverse_covariance(stat.mom2).float()
    mixed, consistent = [], []
    for i in range(len(reqs)):
        u = rome_direction(c_inv, keys.k_bar[i])
        mixed.append(normalized_denominator(u, keys.k_u[i]))
        consistent.append(normalized_denominator(u, keys.k_bar[i]))
    return {"mixed": np.array(mixed), "consistent": np.array(consistent)}


def glitch_labels(model: Model, ids: list[int]) -> np.ndarray:
    """Repeat-oracle labels (``glitch`` / ``normal`` / pre-classed) of ``ids``."""
    from interp.glitch.oracle import repeat_oracle

    return repeat_oracle(model, ids, progress=False).table["cls"].to_numpy()


def compare_precision(spec: str = "smollm2-135m", dtype: str = "bfloat16", *, max_facts: int = 8, n_requests: int = 6,
                      cov_tokens: int = 8192, n_glitch: int = 256, seed: int = 0, device: Optional[str] = None,
                      models: Optional[dict[str, Model]] = None, precision: str = "mixed") -> dict[str, Any]:
    """Measure the differences :data:`TOLERANCES` bounds between float32 and ``dtype``.

    Args:
        spec: the model (registry name, path or hub id).
        dtype: the lower precision (``bfloat16`` or ``float16``).
        max_facts: facts per relation for the answer probabilities.
        n_requests: ROME requests for the denominators.
        cov_tokens: Wikipedia tokens in the key second moment.
        n_glitch: vocabulary ids (seeded random sample) for the oracle labels.
        seed: the sample's seed.
        device: where both models run.
        models: already loaded ``{"float32": ..., dtype: ...}`` (tests).
        precision: the low-precision policy (:func:`interp.model.load_model`): ``"mixed"`` (float32
            attention and residual stream, the default of every command) or ``"pure"``.

    Returns:
        The measured values (keys of :data:`TOLERANCES` plus counts and seconds per precision),
        and ``within_tolerance``: each check's verdict.
    """
    from interp.rome.compute_u import generate_prefixes

    models = dict(models or {})
    out: dict[str, Any] = {"model": spec, "dtype": dtype, "precision": precision, "seconds": {}}
    res: dict[str, dict[str, Any]] = {}
    prefixes: Optional[list[str]] = None
    ids: Optional[list[int]] = None
    for dt in ("float32", dtype):
        m = models.get(dt) or load_model(spec, device=device, dtype=dt, precision=precision)
        t = time.perf_counter()
        with torch.no_grad():
            if prefixes is None:  # the same contexts for both precisions (sampled once, in float32)
                prefixes = generate_prefixes(m, [[5, 10]], seed=seed, top_k=5)
                ids = random.Random(seed).sample(range(m.d_vocab), min(n_glitch, m.d_vocab))
            p, pred = answer_probabilities(m, max_facts)
            den = rome_denominators(m, n_requests, cov_tokens, prefixes)
            assert ids is not None
            labels = glitch_labels(m, ids)
        res[dt] = {"p": p, "pred": pred, "den": den, "labels": labels}
        out["seconds"][dt] = time.perf_counter() - t
        if dt not in models:
            del m
    a, b = res["float32"], res[dtype]
    dp = (a["p"] - b["p"]).abs()
    from scipy.stats import spearmanr

    rel = [np.abs(b["den"][k] - a["den"][k]) / np.maximum(np.abs(a["den"][k]), 1e-12) for k in ("mixed", "consistent")]
    both_a = np.concatenate([a["den"]["mixed"], a["den"]["consistent"]])
    both_b = np.concatenate([b["den"]["mixed"], b["den"]["consistent"]])
    out.update({
        "n_facts": int(len(dp)), "n_requests": int(len(a["den"]["mixed"])), "n_glitch_ids": int(len(a["labels"])),
        "answer_prob_max_abs": float(dp.max()), "answer_prob_mean_abs": float(dp.mean()),
        "top1_agreement_min": float((a["pred"] == b["pred"]).float().mean()),
        "denominator_rel_max": float(max(r.max() for r in rel)),
        "denominator_rel_median": float(np.median(np.concatenate(rel))),
        "denominator_spearman_min": float(spearmanr(both_a, both_b).statistic),
        "glitch_label_agreement_min": float((a["labels"] == b["labels"]).mean()),
        "glitch_count": {"float32": int((a["labels"] == "glitch").sum()), dtype: int((b["labels"] == "glitch").sum())},
    })
    out["within_tolerance"] = {k: (out[k] >= v if k.endswith("_min") else out[k] <= v) for k, v in TOLERANCES.items()}
    return out
