"""Mitigating the final-layer suppression: choose suppressor heads on train facts, test on held-out.

Removing final-layer heads changes the last position's stream by ``x' = x - sum_h (1 - a) o_h``
(rescaling by ``a``; ``a = 0`` is zero ablation) or ``x' = x - sum_h (o_h - mean_h)`` (mean
ablation) on the direct path; the final MLP also reads those heads (except in parallel-attention
blocks, GPT-J and NeoX, where the estimate is exact), so :func:`ablated_readout` is a cheap
*direct-path estimate* from one capture. :func:`select_suppressor_heads` ranks the final-layer heads
with a negative direct attribution on the answer by that estimate, then adds them greedily, each
step measured by a real hooked forward pass on the train facts, while the train metric (mean answer
probability, or accuracy) rises. The chosen heads are then ablated (hooks,
:mod:`interp.recall.ablation`) on the test facts, zero- and few-shot, and on generic text for the
perplexity cost.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd
import torch
from jaxtyping import Float

from interp.capture import capture
from interp.errors import InterpError
from interp.model import Model
from interp.recall.ablation import Head, ablate_heads, head_name
from interp.recall.activations import RecallActivations, prefix_groups, prompt_inputs
from interp.recall.attribution import direct_logit_attribution


def ablated_readout(
    model: Model,
    acts: RecallActivations,
    heads: Sequence[Head],
    mode: str = "zero",
    scale: float = 0.0,
    means: Optional[Float[torch.Tensor, "head d_head"]] = None,
    chunk: int = 128,
) -> tuple[Float[torch.Tensor, "n"], torch.Tensor]:
    """Direct-path estimate of answer probability and correctness with final-layer ``heads`` ablated.

    Args:
        model: the model.
        acts: activations with the last layer captured.
        heads: heads of the last layer.
        mode: ``"zero"``, ``"scale"`` or ``"mean"``.
        scale: the factor for ``"scale"``.
        means: ``[head, d_head]`` mean ``hook_z`` for ``"mean"``.
        chunk: prompts unembedded at once.

    Returns:
        ``(answer_prob, correct)`` per prompt.
    """
    last = model.n_layers - 1
    if any(L != last for L, _ in heads):
        raise InterpError(f"the direct-path readout covers last-layer heads only (layer {last}), got {list(map(head_name, heads))}")
    x = acts.final_resid.clone()
    if heads:
        j = acts.layer_index(last)
        idx = torch.tensor([h for _, h in heads])
        z = acts.z[:, j].float()
        new = z.clone()
        if mode == "zero":
            new[:, idx] = 0
        elif mode == "scale":
            new[:, idx] = z[:, idx] * scale
        elif mode == "mean":
            if means is None:
                raise InterpError("mean ablation needs means")
            new[:, idx] = means[idx].float()
        else:
            raise InterpError(f"unknown mode {mode!r}")
        with torch.no_grad():
            delta = model.head_outputs(new - z, last).detach().float().cpu().sum(1)
        x = x + delta
    ans = torch.tensor(acts.prompts.answer_ids)
    prob = torch.zeros(len(x))
    pred = torch.zeros(len(x), dtype=torch.long)
    with torch.no_grad():
        for a in range(0, len(x), chunk):
            lg = model.unembed(x[a : a + chunk].to(model.device, model.dtype)).float().cpu()
            prob[a : a + chunk] = torch.softmax(lg, -1).gather(1, ans[a : a + chunk, None])[:, 0]
            pred[a : a + chunk] = lg.argmax(-1)
    return prob, pred == ans


def select_suppressor_heads(
    model: Model,
    train: Sequence[RecallActivations],
    max_heads: Optional[int] = None,
    mode: str = "zero",
    scale: float = 0.0,
    means: Optional[torch.Tensor] = None,
    metric: str = "answer_prob",
    min_gain: float = 1e-3,
    batch_size: int = 32,
) -> tuple[list[Head], pd.DataFrame]:
    """Greedily choose final-layer heads whose ablation raises recall on the train facts.

    Candidates are the last layer's heads with a negative mean direct attribution on the answer
    whose single ablation helps by the direct-path estimate (:func:`ablated_readout`); in that order
    each is added if a real hooked pass over the train prompts shows the metric rising by more than
    ``min_gain``.

    Args:
        model: the model.
        train: activations of train-fact prompts (e.g. zero- and few-shot).
        max_heads: most heads to choose (default: no limit).
        mode, scale, means: the ablation (see :func:`ablated_readout`).
        metric: ``"answer_prob"`` (mean answer probability) or ``"accuracy"`` (ties broken by
            answer probability; coarse on few facts).
        min_gain: smallest rise of the metric that keeps a head.
        batch_size: prompts per forward pass.

    Returns:
        ``(heads, trace)``: the chosen heads and one row per step (estimate or measured).
    """
    if metric not in ("answer_prob", "accuracy"):
        raise InterpError(f"metric must be 'answer_prob' or 'accuracy', not {metric!r}")
    last = model.n_layers - 1
    m = {last: means} if mode == "mean" else None

    def key(sc: tuple[float, float]) -> tuple[float, ...]:
        return (sc[1],) if metric == "answer_prob" else sc

    def better(new: tuple[float, float], old: tuple[float, float]) -> bool:
        if metric == "accuracy":
            return new[0] > old[0] + min_gain or (new[0] >= old[0] and new[1] > old[1] + min_gain)
        return new[1] > old[1] + min_gain

    def pool(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
        n = sum(len(p) for p, _ in parts)
        return sum(float(c.float().sum()) for _, c in parts) / n, sum(float(p.sum()) for p, _ in parts) / n

    def estimate(hs: list[Head]) -> tuple[float, float]:
        return pool([ablated_readout(model, a, hs, mode, scale, means) for a in train])

    def measure(hs: list[Head]) -> tuple[float, float]:
        with ablate_heads(model, hs, mode=mode, means=m, scale=scale):
            return pool([evaluate_recall(model, a, batch_size, desc=f"train {','.join(map(head_name, hs))}") for a in train])

    dla = []
    for a in train:
        j = a.layer_index(last)
        with torch.no_grad():
            o = model.head_outputs(a.z[:, j].float(), last).detach().float().cpu()
        dla.append(direct_logit_attribution(model, o, a.final_resid, torch.tensor(a.prompts.answer_ids)))
    mean_dla = torch.cat(dla).mean(0)
    base = pool([(a.answer_prob, a.correct) for a in train])
    trace = [{"step": "base", "heads": "", "accuracy": base[0], "answer_prob": base[1], "kept": True}]
    single = []
    for h in [(last, h) for h in range(model.n_heads) if float(mean_dla[h]) < 0]:
        s = estimate([h])
        trace.append({"step": "direct-path estimate", "heads": head_name(h), "dla_answer": float(mean_dla[h[1]]),
                      "accuracy": s[0], "answer_prob": s[1], "kept": False})
        if better(s, base):
            single.append((s, h))
    single.sort(key=lambda t: key(t[0]), reverse=True)
    chosen: list[Head] = []
    best = base
    for _, h in single:
        if max_heads is not None and len(chosen) >= max_heads:
            break
        s = measure(chosen + [h])
        keep = better(s, best)
        trace.append({"step": "measured", "heads": ",".join(map(head_name, chosen + [h])), "accuracy": s[0],
                      "answer_prob": s[1], "kept": keep})
        if keep:
            chosen.append(h)
            best = s
    return chosen, pd.DataFrame(trace)


def evaluate_recall(model: Model, acts: RecallActivations, batch_size: int = 32, desc: str = "evaluate") -> tuple[torch.Tensor, torch.Tensor]:
    """Answer probability and correctness of every prompt under whatever hooks are active.

    Returns:
        ``(answer_prob, correct)`` per prompt of ``acts.prompts``.
    """
    p = acts.prompts
    prob = torch.zeros(len(p))
    ok = torch.zeros(len(p), dtype=torch.bool)
    for rows in prefix_groups(p):
        prefix, ids, _ = prompt_inputs(model, p, rows)
        cap = capture(model, ids, prefix=prefix, logits=True, batch_size=batch_size, desc=desc)
        ans = torch.tensor([p.answer_ids[i] for i in rows])
        lg = cap.logits.float()
        idx = torch.tensor(rows)
        prob[idx] = torch.softmax(lg, -1).gather(1, ans[:, None])[:, 0]
        ok[idx] = lg.argmax(-1) == ans
    return prob, ok


def mitigation_table(
    model: Model,
    test: dict[str, RecallActivations],
    heads: Sequence[Head],
    mode: str = "zero",
    scale: float = 0.0,
    means: Optional[torch.Tensor] = None,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Accuracy and mean answer probability before and after the ablation, per shot form and relation.

    The "after" numbers come from a real hooked forward pass; ``direct_path_prob_mitigated`` is the
    direct-path estimate (:func:`ablated_readout`), which leaves out the final MLP's response.

    Args:
        model: the model.
        test: shot-form label -> activations of the test-fact prompts.
        heads: the heads to ablate.
        mode, scale, means: the ablation.
        batch_size: prompts per forward pass.

    Returns:
        One row per (shots, relation) (relation ``"all"`` pools them).
    """
    m = {model.n_layers - 1: means} if mode == "mean" else None
    rows = []
    for label, acts in test.items():
        if heads:
            with ablate_heads(model, heads, mode=mode, means=m, scale=scale):
                after_p, after_ok = evaluate_recall(model, acts, batch_size, desc=f"ablated {label}")
            pred_p, _ = ablated_readout(model, acts, heads, mode, scale, means)
        else:
            after_p, after_ok, pred_p = acts.answer_prob, acts.correct, acts.answer_prob
        rels = [f.relation for f in acts.prompts.facts]
        for rel in ["all"] + acts.prompts.relations:
            idx = torch.tensor([i for i, r in enumerate(rels) if rel == "all" or r == rel])
            rows.append({"shots": label, "relation": rel, "n": len(idx),
                         "accuracy_base": float(acts.correct[idx].float().mean()),
                         "accuracy_mitigated": float(after_ok[idx].float().mean()),
                         "answer_prob_base": float(acts.answer_prob[idx].mean()),
                         "answer_prob_mitigated": float(after_p[idx].mean()),
                         "direct_path_prob_mitigated": float(pred_p[idx].mean())})
    return pd.DataFrame(rows)
