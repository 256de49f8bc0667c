"""Mitigating the final-layer suppression, chosen on train facts and measured on facts never seen.

Two interventions that follow from the interpretation, and both together:

(a) **heads**: the final-layer heads that suppress the answer are removed or rescaled. Removing them
changes the last position's stream by ``x' = x - sum_h (1 - a) o_h`` (rescaling by ``a``; ``a = 0``
is zero ablation) or ``x' = x - sum_h (o_h - mean_h)`` (mean ablation) on the direct path; the final
MLP also reads those heads (except in parallel-attention blocks, GPT-J and NeoX, where the estimate
is exact), so :func:`ablated_readout` is only a cheap *direct-path estimate* from one capture.
:func:`select_suppressor_heads` therefore measures each final-layer head's removal by a real hooked
forward pass on the train facts (the last token re-run through the final block alone), ranks the
heads by that measured gain, then adds them greedily, each step measured the same way, while the
train metric (mean answer probability, or accuracy) rises. The direct-path estimate is kept in the
trace beside the measured value: the difference is what the final MLP does with the heads' writes.

(b) **frequency**: the component of the final MLP's output along the residual direction whose
logits follow token frequency is removed. With the final norm's gain ``w`` (scale frozen), token
``t``'s logit from a residual vector ``u`` is ``(w * u) . W_U[:, t]``; the frequency direction is
the least-squares solution over the tokens that occur (``c_t > 0``)

.. math::

    u^* = \arg\min_u \sum_{t: c_t > 0} \big((w \odot u)^\top W_U[:, t] - (\log c_t - \overline{\log c})\big)^2,
    \qquad d = u^* / \lVert u^* \rVert,

(:func:`frequency_direction`) and the final MLP output becomes ``m' = m - gamma (m . d) d`` at every
position (``gamma = 1`` projects it out, ``gamma < 0`` amplifies it; the factor is chosen on the
train facts, where :func:`projected_readout` computes its effect exactly from one capture).

:func:`choose_mitigation` measures each candidate on the train facts (zero- and few-shot pooled) and
picks the one with the highest mean answer probability that loses no train accuracy and whose
perplexity cost on training text is at most :data:`MAX_PPL_COST`, read as the one-sided 95% upper
bound over paragraphs (:func:`perplexity_cost`), so that the limit holds on text never seen; "none"
when nothing qualifies. The heads are themselves chosen greedily under the same no-accuracy-loss
rule.
:func:`mitigate` applies the choice as a context manager (the same choice ``interp
ablate-final-heads`` reports, and ``interp run recall`` makes at the same sizes: :func:`recall_params`);
:func:`mitigation_table` measures it on test and independent facts.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float

from interp.errors import InterpError
from interp.model import Model
from interp.recall import sources
from interp.recall.ablation import Head, ablate_heads, ablation_hooks, head_name
from interp.recall.activations import RecallActivations, collect_activations, group_answer_scores, prefix_groups, prompt_tails
from interp.scoring import target_logprobs
from interp.progress import track
from interp.tail import TailCache, lm_head, tail_supported
from interp.recall.anti_overconfidence import log_frequency, text_nll, text_tokens
from interp.recall.attribution import direct_logit_attribution, final_norm_linear
from interp.recall.facts import build_prompts, load_relations


def answer_readout(model: Model, resid: Float[torch.Tensor, "n d_model"], answer_ids: Sequence[int],
                   chunk: int = 128) -> tuple[Float[torch.Tensor, "n"], torch.Tensor]:
    """Answer probability and correctness (answer is the argmax) read from final residual streams."""
    ans = torch.tensor(list(answer_ids))
    prob = torch.zeros(len(resid))
    pred = torch.zeros(len(resid), dtype=torch.long)
    with torch.no_grad():
        for a in range(0, len(resid), chunk):
            lg = model.unembed(resid[a : a + chunk].to(model.device, model.dtype))
            prob[a : a + chunk] = target_logprobs(lg, ans[a : a + chunk]).exp().cpu()
            pred[a : a + chunk] = lg.argmax(-1).cpu()
    return prob, pred == ans


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
    return answer_readout(model, x, acts.prompts.answer_ids, chunk)


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
    keep_accuracy: bool = False,
) -> tuple[list[Head], pd.DataFrame]:
    """Greedily choose final-layer heads whose ablation raises recall on the train facts.

    Every head of the last layer is removed alone and measured by a real hooked pass over the train
    prompts; those whose removal raises the metric by more than ``min_gain`` are the candidates, in
    order of their measured gain, and each is added if the pass with it added shows the metric
    rising again. The direct-path estimate (:func:`ablated_readout`) of the heads with a negative
    mean direct attribution on the answer is recorded beside, for comparison; it does not filter
    (on Gemma 3 it puts head 17.2's gain at +0.001 where the real pass measures +0.05: the final
    MLP reads the heads' writes).

    Args:
        model: the model.
        train: activations of train-fact prompts (e.g. zero- and few-shot).
        max_heads: most heads to choose (default: no limit).
        mode, scale, means: the ablation (see :func:`ablated_readout`).
        metric: ``"answer_prob"`` (mean answer probability) or ``"accuracy"`` (ties broken by
            answer probability; coarse on few facts).
        min_gain: smallest rise of the metric that keeps a head.
        batch_size: prompts per forward pass.
        keep_accuracy: with ``answer_prob``, also keep a head only if train accuracy stays at least
            the unablated model's.

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
        return new[1] > old[1] + min_gain and (not keep_accuracy or new[0] >= base[0])

    def pool(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
        n = sum(len(p) for p, _ in parts)
        return sum(float(c.float().sum()) for _, c in parts) / n, sum(float(p.sum()) for p, _ in parts) / n

    def estimate(hs: list[Head]) -> tuple[float, float]:
        return pool([ablated_readout(model, a, hs, mode, scale, means) for a in train])

    def measure(hs: list[Head]) -> tuple[float, float]:
        with ablate_heads(model, hs, mode=mode, means=m, scale=scale):
            return pool([evaluate_recall(model, a, batch_size, desc=f"train {','.join(map(head_name, hs))}", from_layer=last,
                                         last_only=True) for a in train])

    dla = []
    for a in train:
        j = a.layer_index(last)
        with torch.no_grad():
            o = model.head_outputs(a.z[:, j].float(), last).detach().float().cpu()
        dla.append(direct_logit_attribution(model, o, a.final_resid, torch.tensor(a.prompts.answer_ids)))
    mean_dla = torch.cat(dla).mean(0)
    base = pool([(a.answer_prob, a.correct) for a in train])
    trace = [{"step": "base", "heads": "", "accuracy": base[0], "answer_prob": base[1], "kept": True}]
    for h in [(last, h) for h in range(model.n_heads) if float(mean_dla[h]) < 0]:
        s = estimate([h])
        trace.append({"step": "direct-path estimate", "heads": head_name(h), "dla_answer": float(mean_dla[h[1]]),
                      "accuracy": s[0], "answer_prob": s[1], "kept": False})
    measured: dict[tuple[Head, ...], tuple[float, float]] = {}
    single = []
    for h in [(last, h) for h in range(model.n_heads)]:
        s = measured[(h,)] = measure([h])
        trace.append({"step": "measured alone", "heads": head_name(h), "dla_answer": float(mean_dla[h[1]]),
                      "accuracy": s[0], "answer_prob": s[1], "kept": False})
        if better(s, base):
            single.append((s, h))
    single.sort(key=lambda t: key(t[0]), reverse=True)
    chosen: list[Head] = []
    best = base
    for _, h in single:
        if max_heads is not None and len(chosen) >= max_heads:
            break
        hs = tuple(chosen + [h])
        s = measured[hs] if hs in measured else measure(list(hs))
        keep = better(s, best)
        trace.append({"step": "measured", "heads": ",".join(map(head_name, hs)), "accuracy": s[0],
                      "answer_prob": s[1], "kept": keep})
        if keep:
            chosen.append(h)
            best = s
    return chosen, pd.DataFrame(trace)


def evaluate_recall(model: Model, acts: RecallActivations, batch_size: int = 32, desc: str = "evaluate",
                    from_layer: Optional[int] = None, last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Answer probability and correctness of every prompt under whatever hooks are active.

    Args:
        model: the model.
        acts: the prompts' activations (their prompt set is what is run).
        batch_size: prompts per forward pass.
        desc: progress label.
        from_layer: the first block the active hooks act in, when they act in no earlier one: the
            residual streams entering it are computed once per prompt set and kept, and each
            evaluation re-runs only the blocks from there on (:mod:`interp.tail`; exact). None:
            whole forward passes.
        last_only: with ``from_layer``, the active hooks change nothing that the last position reads
            at earlier positions (final-block head outputs or MLP, say), so each prompt's last token
            is re-run alone (:meth:`interp.tail.TailCache.logits`).

    Returns:
        ``(answer_prob, correct)`` per prompt of ``acts.prompts``.
    """
    p = acts.prompts
    prob = torch.zeros(len(p))
    ok = torch.zeros(len(p), dtype=torch.bool)
    tails = prompt_tails(model, acts, from_layer, batch_size) if from_layer is not None else None
    for g, rows in enumerate(prefix_groups(p)):
        idx = torch.tensor(rows)
        prob[idx], ok[idx] = group_answer_scores(model, acts, g, rows, tails, batch_size, desc, last_only=last_only)
    return prob, ok


def text_tail(model: Model, texts: Sequence[str], start: int, max_tokens: int = 256) -> Optional[TailCache]:
    """A :class:`~interp.tail.TailCache` of ``texts`` as :func:`perplexity` cuts them (None where the
    model's blocks cannot be resumed)."""
    if start < 1 or not texts or not tail_supported(model):
        return None
    return TailCache(model, text_tokens(model, texts, max_tokens), start, batch_size=8)


MAX_PPL_COST = 0.02  # largest relative perplexity rise a chosen mitigation may cost (upper bound on training text)
PPL_Z = 1.645  # one-sided 95% normal quantile: the perplexity constraint holds for the bound, not the estimate
HEAD_SCALES = (0.5, 0.25, 0.75)  # factors tried on the chosen heads' outputs instead of removing them
GAMMAS = (-1.0, -0.5, 0.25, 0.5, 0.75, 1.0)  # factors tried for the frequency projection (1 = project out, < 0 amplifies)
METHODS = ("auto", "heads", "frequency", "both", "none")


def frequency_direction(model: Model, freq: Any, chunk: int = 16384) -> Float[torch.Tensor, "d_model"]:
    """The unit residual direction whose logits best follow log token frequency (module docstring).

    Args:
        model: the model (final-norm gain and unembedding).
        freq: token frequency (:func:`interp.frequency.token_frequency`).
        chunk: tokens read from ``W_U`` at once (the normal equations are accumulated).

    Returns:
        ``d``, with ``|d| = 1`` (for LayerNorm models it has no mean component).
    """
    lf, occ = log_frequency(freq)
    fn = final_norm_linear(model)
    W = model.W_U.detach()
    ids = torch.nonzero(occ[: W.shape[1]]).flatten()
    if len(ids) < 2:
        raise InterpError("the frequency direction needs at least 2 tokens that occur")
    y = lf[ids].double()
    y = y - y.mean()
    d = model.d_model
    mean_col = torch.zeros(d, dtype=torch.float64)
    for a in range(0, len(ids), chunk):
        mean_col += W[:, ids[a : a + chunk].to(W.device)].double().cpu().sum(1)
    mean_col /= len(ids)
    A = torch.zeros(d, d, dtype=torch.float64)
    b = torch.zeros(d, dtype=torch.float64)
    w = fn.w.double()
    for a in range(0, len(ids), chunk):
        Wc = ((W[:, ids[a : a + chunk].to(W.device)].double().cpu() - mean_col[:, None]) * w[:, None]).float()
        A += (Wc @ Wc.T).double()
        b += (Wc @ y[a : a + chunk].float()).double()
    u = torch.linalg.solve(A + 1e-6 * float(torch.diagonal(A).mean()) * torch.eye(d, dtype=A.dtype), b)
    if fn.centre:
        u = u - u.mean()
    return (u / u.norm()).float()


def projected_readout(model: Model, acts: RecallActivations, direction: Float[torch.Tensor, "d_model"], gamma: float,
                      chunk: int = 128) -> tuple[Float[torch.Tensor, "n"], torch.Tensor]:
    """Answer probability and correctness with the final MLP output's frequency component scaled by
    ``1 - gamma``, computed from one capture. Exact: the final MLP output is the last write into the
    residual stream before the final norm.
    """
    d = direction.float()
    x = acts.final_resid - gamma * (acts.final_mlp_out @ d)[:, None] * d
    return answer_readout(model, x, acts.prompts.answer_ids, chunk)


def projected_readouts(model: Model, acts: RecallActivations, direction: Float[torch.Tensor, "d_model"],
                       gammas: Sequence[float], chunk: int = 128) -> list[tuple[Float[torch.Tensor, "n"], torch.Tensor]]:
    """:func:`projected_readout` for each of ``gammas``, with one product with ``W_U`` per chunk of
    prompts: each factor's logits follow from the unprojected ones (:class:`Projection`; a model
    with logit soft-capping gets one product per factor)."""
    proj = Projection.of(model, [direction])
    if proj is None:
        return [projected_readout(model, acts, direction, g, chunk) for g in gammas]
    ans = torch.tensor(list(acts.prompts.answer_ids))
    n = len(ans)
    probs = [torch.zeros(n) for _ in gammas]
    preds = [torch.zeros(n, dtype=torch.long) for _ in gammas]
    with torch.no_grad():
        for a in range(0, n, chunk):
            sl = slice(a, a + chunk)
            x = acts.final_resid[sl].to(model.device, torch.float32)
            m = acts.final_mlp_out[sl].to(model.device, torch.float32)
            L = model.unembed(x.to(model.dtype)).float()
            for j, g in enumerate(gammas):
                Lg = proj.logits(L, x, m, 0, g)
                probs[j][sl] = target_logprobs(Lg, ans[sl]).exp().cpu()
                preds[j][sl] = Lg.argmax(-1).cpu()
                del Lg
    return [(p, q == ans) for p, q in zip(probs, preds)]


@dataclass
class Projection:
    """Logits with the final MLP output's component along ``d`` scaled, from the unprojected logits.

    The projection acts on the final MLP output ``m``, the last write before the final norm, so
    with the norm's gain ``w``, bias ``b`` and divisor ``s`` (:func:`final_norm_linear`), the stream
    ``x`` and ``c = m . d`` at a position, the projected logits follow from the unprojected ones
    ``L`` without another product with ``W_U``:

    .. math::

        x_\\gamma = x - \\gamma c d, \\qquad
        L_\\gamma = \\frac{s(x)}{s(x_\\gamma)} (L - k) + k - \\frac{\\gamma c}{s(x_\\gamma)} v,
        \\qquad k = U(b), \\quad v = U(w \\odot d) - U(0),

    with ``U`` the unembedding (affine). Exact up to float rounding; not for models with logit
    soft-capping (:meth:`of` gives None there).
    """

    norm: Any
    k: torch.Tensor
    dirs: list[torch.Tensor]
    vs: list[torch.Tensor]

    @staticmethod
    def supported(model: Model) -> bool:
        """Whether logits are affine in the final norm's output (no logit soft-capping)."""
        cap = float(getattr(model.bridge.cfg, "output_logits_soft_cap", -1.0) or -1.0)
        return not (cap > 0 or getattr(model.hf_model.config, "final_logit_softcapping", None))

    @classmethod
    def of(cls, model: Model, directions: Sequence[torch.Tensor]) -> Optional["Projection"]:
        """The projection for each of ``directions`` (None where the model soft-caps its logits)."""
        if not cls.supported(model):
            return None
        norm = final_norm_linear(model)
        dev = model.device
        with torch.no_grad():
            zero = lm_head(model, torch.zeros(1, model.d_model, device=dev, dtype=model.dtype)).float()[0]
            k = lm_head(model, norm.b[None].to(dev, model.dtype)).float()[0]
            dirs = [d.float().to(dev) for d in directions]
            vs = [lm_head(model, (norm.w.to(dev) * d)[None].to(model.dtype)).float()[0] - zero for d in dirs]
        return cls(norm, k, dirs, vs)

    def logits(self, L: torch.Tensor, x: torch.Tensor, m: torch.Tensor, j: int, gamma: float) -> torch.Tensor:
        """``L_gamma`` for direction ``j`` (a new tensor) from logits ``L`` of streams ``x`` whose final
        MLP outputs are ``m`` (rows alike)."""
        d = self.dirs[j]
        c = m @ d
        s0 = self.norm.scale(x)
        sg = self.norm.scale(x - gamma * c[:, None] * d)
        return (L - self.k).mul_((s0 / sg)[:, None]).add_(self.k).addr_((gamma * c / sg).neg(), self.vs[j])


def frequency_projection_hooks(model: Model, direction: Float[torch.Tensor, "d_model"], gamma: float = 1.0) -> list[tuple[str, Any]]:
    """Hooks that replace the final MLP output ``m`` by ``m - gamma (m . d) d`` at every position."""
    last = model.n_layers - 1
    dvec = direction.float()

    def fn(x, hook):
        dd = dvec.to(x.device, x.dtype)
        return x - gamma * (x @ dd)[..., None] * dd

    return [(model.hook("mlp_out", last), fn)]


@dataclass
class Mitigation:
    """One mitigation: which heads are removed or rescaled and how much frequency component is removed.

    Attributes:
        method: ``none``, ``heads``, ``frequency`` or ``both``.
        heads: final-layer heads ablated (``heads``/``both``).
        mode, scale, means: the head ablation (:func:`interp.recall.ablation.ablate_heads`).
        direction: the frequency direction (``frequency``/``both``).
        gamma: the factor of the frequency projection.
    """

    method: str = "none"
    heads: list[Head] = field(default_factory=list)
    mode: str = "zero"
    scale: float = 0.0
    means: Optional[torch.Tensor] = None
    direction: Optional[torch.Tensor] = None
    gamma: float = 0.0

    def hooks(self, model: Model) -> list[tuple[str, Any]]:
        """The forward hooks that apply it."""
        out: list[tuple[str, Any]] = []
        if self.heads:
            m = {model.n_layers - 1: self.means} if self.mode == "mean" else None
            out += ablation_hooks(model, self.heads, self.mode, m, self.scale)
        if self.direction is not None and self.gamma:
            out += frequency_projection_hooks(model, self.direction, self.gamma)
        return out

    def start_layer(self, model: Model) -> Optional[int]:
        """The first block its hooks act in (None when it changes nothing): blocks before it run
        unchanged, so evaluations under it re-run only the rest (:mod:`interp.tail`)."""
        layers = [L for L, _ in self.heads]
        if self.direction is not None and self.gamma:
            layers.append(model.n_layers - 1)
        return min(layers) if layers else None

    def last_position_only(self, model: Model) -> bool:
        """Whether the last position's logits under it need only the last token re-run: it acts in
        the final block alone, after that block's keys and values (head outputs, the MLP's output),
        so the earlier positions' keys and values there are the unchanged model's."""
        return self.start_layer(model) == model.n_layers - 1

    def describe(self) -> str:
        """One line: the method, its heads and factor (``none`` for no change)."""
        parts = []
        if self.heads:
            how = f"x{self.scale:g}" if self.mode == "scale" else f"{self.mode}-ablated"
            parts.append(f"heads {', '.join(map(head_name, self.heads))} {how}")
        if self.direction is not None and self.gamma:
            parts.append(f"final-MLP frequency component x{1 - self.gamma:g}")
        return f"{self.method}: {' + '.join(parts)}" if parts else "none"


def _pool(parts: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    n = sum(len(p) for p, _ in parts)
    return sum(float(c.float().sum()) for _, c in parts) / n, sum(float(p.sum()) for p, _ in parts) / n


def measure_mitigation(model: Model, acts: Sequence[RecallActivations], mit: Mitigation, batch_size: int = 32) -> tuple[float, float]:
    """Pooled ``(accuracy, mean answer probability)`` over prompt sets with ``mit`` applied."""
    if mit.method == "none":
        return _pool([(a.answer_prob, a.correct) for a in acts])
    with model.hooks(mit.hooks(model)):
        return _pool([evaluate_recall(model, a, batch_size, desc=f"train {mit.method}", from_layer=mit.start_layer(model),
                                      last_only=mit.last_position_only(model)) for a in acts])


def with_projection(mit: Mitigation, direction: torch.Tensor, gamma: float) -> Mitigation:
    """``mit`` (its heads part) with the frequency projection ``gamma`` along ``direction`` added."""
    h = _heads_part(mit)
    return Mitigation("both" if h.heads else "frequency", h.heads, h.mode, h.scale, h.means, direction, gamma)


def evaluate_recall_projected(model: Model, acts: RecallActivations, mit: Mitigation,
                              variants: Sequence[tuple[torch.Tensor, float]], batch_size: int = 32,
                              desc: str = "evaluate") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Answer probability and correctness of every prompt under ``mit`` (its heads part) and under it
    with each frequency projection ``(direction, gamma)`` of ``variants`` (rows 1..), from one hooked pass.

    The pass records the last position's stream entering the final norm and its final MLP output;
    each projection's logits follow from the pass's own (:class:`Projection`). Exact: the projection
    acts on the final MLP output, after the final block's keys and values, so the last position's
    logits under it depend only on that position's stream. Where the model soft-caps its logits,
    or ``mit`` changes no head, or the blocks cannot be resumed, each setting gets its own pass.
    """
    from interp.capture import current_batch

    base = _heads_part(mit)
    start = base.start_layer(model)
    proj = Projection.of(model, [d for d, _ in variants])
    tails = prompt_tails(model, acts, start, batch_size) if start is not None and proj is not None else None
    if tails is None:
        out = []
        for m in [base] + [with_projection(base, d, g) for d, g in variants]:
            if m.method == "none":
                out.append((acts.answer_prob, acts.correct))
                continue
            if m.method == "frequency":
                out.append(projected_readout(model, acts, m.direction, m.gamma))
                continue
            with model.hooks(m.hooks(model)):
                out.append(evaluate_recall(model, acts, batch_size, desc=desc, from_layer=m.start_layer(model),
                                           last_only=m.last_position_only(model)))
        return out
    last = model.n_layers - 1
    seen: dict[str, dict[int, torch.Tensor]] = {"x": {}, "m": {}}

    def record(name: str):
        def keep(t, hook):
            info = current_batch()
            for j, r in enumerate(info.rows.tolist()):
                seen[name][r] = t[j, int(info.last[j])].detach().float()
        return keep

    def readout(j: int, gamma: float):
        def f(rows: list[int], L: torch.Tensor) -> torch.Tensor:
            x = torch.stack([seen["x"][r] for r in rows])
            m = torch.stack([seen["m"][r] for r in rows])
            return proj.logits(L.float(), x, m, j, gamma)
        return f

    p = acts.prompts
    got = [(torch.zeros(len(p)), torch.zeros(len(p), dtype=torch.bool)) for _ in range(1 + len(variants))]
    hooks = base.hooks(model) + [(model.hook("mlp_out", last), record("m")), (model.hook("resid_post", last), record("x"))]
    with model.hooks(hooks), torch.no_grad():
        readouts = [None] + [readout(j, gamma) for j, (_, gamma) in enumerate(variants)]
        for k, rows in enumerate(prefix_groups(p)):
            for v in seen.values():
                v.clear()
            idx = torch.tensor(rows)
            scores = tails[k].answer_scores_many([p.answer_ids[i] for i in rows], readouts, desc=desc,
                                                 last_only=base.last_position_only(model))
            for (prob, ok), (logp, top) in zip(got, scores):
                prob[idx], ok[idx] = logp.exp(), top
    return got


def perplexity(model: Model, texts: Sequence[str], mit: Optional[Mitigation] = None, max_tokens: int = 256,
               tail: Optional[TailCache] = None) -> float:
    """Perplexity of ``texts`` with ``mit`` applied (none: the model as it is).

    ``tail`` (:func:`text_tail` of the same texts) re-runs only its blocks when ``mit`` acts in no
    earlier one; otherwise whole forward passes are run.
    """
    return perplexity_from(*text_nlls(model, texts, mit, max_tokens, tail))


def perplexity_from(nll: torch.Tensor, n: torch.Tensor) -> float:
    """Perplexity from per-text summed NLLs and scored-token counts (:func:`text_nlls`)."""
    return float(np.exp(float(nll.sum()) / int(n.sum())))


def text_nlls(model: Model, texts: Sequence[str], mit: Optional[Mitigation] = None, max_tokens: int = 256,
              tail: Optional[TailCache] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per text, summed next-token NLL and scored-token count with ``mit`` applied
    (:func:`~interp.recall.anti_overconfidence.text_nll`; ``tail`` as in :func:`perplexity`)."""
    start = mit.start_layer(model) if mit is not None else None
    use = tail if tail is not None and (start is None or start >= tail.start) else None
    if start is None:
        return text_nll(model, texts, max_tokens=max_tokens, tail=use)
    with model.hooks(mit.hooks(model)):  # type: ignore[union-attr]
        return text_nll(model, texts, max_tokens=max_tokens, tail=use)


def perplexity_cost(base: Float[torch.Tensor, "text"], changed: Float[torch.Tensor, "text"], n: torch.Tensor,
                    z: float = PPL_Z) -> tuple[float, float]:
    """Relative perplexity rise over texts and its one-sided upper confidence bound.

    With text ``i``'s summed NLL ``b_i`` before and ``a_i`` after, and ``n_i`` scored tokens, the
    cost is ``exp(D) - 1`` with ``D = sum_i (a_i - b_i) / sum_i n_i``. Texts are the sampled unit
    (tokens of one paragraph are not independent), so ``D``'s standard error is the ratio
    estimator's, ``se = sqrt(k / (k - 1) * sum_i (a_i - b_i - D n_i)^2) / sum_i n_i`` over ``k``
    texts, and the bound is ``exp(D + z se) - 1``. A cost measured on 32 paragraphs can be half
    that on others (Qwen's full run: 1.1% on the selection texts, 2.1% held out); the constraint
    is put on the bound.

    Args:
        base: per text, summed NLL of the model as it is.
        changed: per text, summed NLL with the change applied (same texts, same cuts).
        n: per text, scored tokens.
        z: normal quantile of the bound (0: the bound is the estimate).

    Returns:
        ``(cost, upper)``.
    """
    d = (changed - base).double()
    N = float(n.sum())
    if N <= 0:
        raise InterpError("no scored tokens: the perplexity cost needs texts of at least two tokens")
    D = float(d.sum()) / N
    k = len(d)
    se = float(torch.sqrt(k / (k - 1) * ((d - D * n.double()) ** 2).sum())) / N if k > 1 else 0.0
    return float(np.expm1(D)), float(np.expm1(D + z * se))


def _heads_part(mit: Mitigation) -> Mitigation:
    """``mit`` without its frequency projection."""
    return Mitigation("heads" if mit.heads else "none", mit.heads, mit.mode, mit.scale, mit.means)


def _head_key(mit: Mitigation) -> tuple[Any, ...]:
    """What ``mit`` does to the heads (``()`` for nothing): mitigations with one key differ only in
    their frequency projection and share a pass over text (:func:`text_nlls_many`)."""
    return (tuple(mit.heads), mit.mode, mit.scale, id(mit.means)) if mit.heads else ()


def text_nlls_many(model: Model, texts: Sequence[str], mits: Sequence[Mitigation], max_tokens: int = 256,
                   tail: Optional[TailCache] = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`text_nlls` of ``texts`` under each of ``mits`` (per text: summed NLL, scored tokens),
    sharing passes.

    Mitigations that differ only in their frequency projection share one pass over the text: the
    projected logits follow from the unprojected ones without another product with ``W_U``
    (:class:`Projection`). The shared pass needs ``tail`` and a model without logit soft-capping
    (otherwise each mitigation gets its own pass). So the model as it is and the frequency
    projection cost one pass, and heads with or without the projection another.
    """
    out: list[Optional[tuple[torch.Tensor, torch.Tensor]]] = [None] * len(mits)
    groups: dict[Any, list[int]] = {}
    for i, m in enumerate(mits):
        groups.setdefault(_head_key(m), []).append(i)
    cap = not Projection.supported(model)
    for idx in groups.values():
        base = _heads_part(mits[idx[0]])
        proj = [i for i in idx if mits[i].direction is not None and mits[i].gamma]
        if tail is None or tail.head is not None or cap or not proj or (base.start_layer(model) or model.n_layers - 1) < tail.start:
            for i in idx:
                out[i] = text_nlls(model, texts, mits[i], max_tokens, tail)
            continue
        nll, n = _shared_pass(model, texts, base, [(mits[i].direction, mits[i].gamma) for i in proj], max_tokens, tail)
        for i in idx:
            out[i] = (nll[1 + proj.index(i)] if i in proj else nll[0], n)
    return out  # type: ignore[return-value]


def perplexities(model: Model, texts: Sequence[str], mits: Sequence[Mitigation], max_tokens: int = 256,
                 tail: Optional[TailCache] = None) -> list[float]:
    """:func:`perplexity` of ``texts`` under each of ``mits``, sharing passes (:func:`text_nlls_many`)."""
    return [perplexity_from(a, n) for a, n in text_nlls_many(model, texts, mits, max_tokens, tail)]


def _shared_pass(model: Model, texts: Sequence[str], base: Mitigation, variants: Sequence[tuple[torch.Tensor, float]],
                 max_tokens: int, tail: TailCache, batch_size: int = 8, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Per text, summed NLL under ``base`` (row 0) and under ``base`` with each ``(direction, gamma)``
    projection (rows 1..), and the scored tokens, from one pass (:func:`text_nlls_many`)."""
    from interp.capture import current_batch

    toks = text_tokens(model, texts, max_tokens, tail)
    last = model.n_layers - 1
    dev = model.device
    proj = Projection.of(model, [d for d, _ in variants])
    assert proj is not None  # text_nlls_many runs no shared pass under soft-capping
    seen: dict[str, dict[int, torch.Tensor]] = {"x": {}, "m": {}}

    def record(name: str):
        def keep(t, hook):
            info = current_batch()
            for j, r in enumerate(info.rows.tolist()):
                seen[name][r] = t[j, : int(info.lengths[j])].detach().float()
        return keep

    hooks = base.hooks(model) + [(model.hook("mlp_out", last), record("m")), (model.hook("resid_post", last), record("x"))]
    nll = torch.zeros(1 + len(variants), len(toks), dtype=torch.float64)
    n = torch.tensor([len(t) - 1 for t in toks], dtype=torch.long)
    with model.hooks(hooks), torch.no_grad():
        for a in track(range(0, len(toks), batch_size), desc="generic text", unit="batch", disable=len(toks) <= batch_size):
            rows = list(range(a, min(a + batch_size, len(toks))))
            for v in seen.values():
                v.clear()
            finals = tail.hidden(rows=rows)
            h = torch.cat([f[: len(toks[r]) - 1] for f, r in zip(finals, rows)]).to(dev)
            x = torch.cat([seen["x"][r][: len(toks[r]) - 1] for r in rows]).to(dev)
            m = torch.cat([seen["m"][r][: len(toks[r]) - 1] for r in rows]).to(dev)
            tgt = torch.cat([torch.tensor(toks[r][1:], dtype=torch.long) for r in rows]).to(dev)
            owner = torch.cat([torch.full((len(toks[r]) - 1,), r, dtype=torch.long) for r in rows])
            per: list[list[torch.Tensor]] = [[] for _ in range(1 + len(variants))]
            for c0 in range(0, len(h), chunk):
                sl = slice(c0, c0 + chunk)
                L = lm_head(model, h[sl].to(model.dtype)).float()
                per[0].append(-target_logprobs(L, tgt[sl]).double().cpu())
                for j, (_, g) in enumerate(variants):
                    Lg = proj.logits(L, x[sl], m[sl], j, g)
                    per[1 + j].append(-target_logprobs(Lg, tgt[sl]).double().cpu())
                    del Lg
            for j, parts in enumerate(per):
                nll[j].index_add_(0, owner, torch.cat(parts))
    return nll, n


def choose_mitigation(
    model: Model,
    train: Sequence[RecallActivations],
    freq: Any = None,
    texts: Sequence[str] = (),
    method: str = "auto",
    mode: str = "zero",
    scale: float = 0.0,
    means: Optional[torch.Tensor] = None,
    max_heads: Optional[int] = None,
    metric: str = "answer_prob",
    gammas: Sequence[float] = GAMMAS,
    head_scales: Sequence[float] = HEAD_SCALES,
    max_ppl_cost: float = MAX_PPL_COST,
    ppl_z: float = PPL_Z,
    min_gain: float = 1e-3,
    batch_size: int = 32,
) -> tuple[Mitigation, dict[str, Mitigation], pd.DataFrame]:
    """Choose the mitigation on train facts (module docstring).

    Candidates: the greedy heads (:func:`select_suppressor_heads`), removed or rescaled by each of
    ``head_scales``; the frequency factor with the highest train answer probability; each of those
    head settings with that factor together (read from the head setting's own pass,
    :func:`evaluate_recall_projected`). The choice (``method="auto"``, or the one named) is
    the candidate with the highest train answer probability that rises by more than ``min_gain``,
    loses no train accuracy and costs at most ``max_ppl_cost`` perplexity (upper confidence bound
    over the paragraphs of ``texts``, :func:`perplexity_cost`; candidates with one head setting
    share a pass over the text, :func:`text_nlls_many`). The returned ``candidates`` hold, per
    method, one setting: the chosen one's head setting for ``heads`` and ``both`` when the choice
    changes heads (so the two differ only by the projection), else the heads removed outright.

    Args:
        model: the model.
        train: activations of train-fact prompts (zero- and few-shot; the last layer captured).
        freq: token frequency, for the frequency direction (None: no frequency candidates).
        texts: training text for the perplexity constraint (empty: not checked).
        method: ``auto`` (best candidate), ``heads``, ``frequency``, ``both`` or ``none``.
        mode, scale, means, max_heads, metric: the head candidate (:func:`select_suppressor_heads`).
        gammas: factors tried for the frequency projection.
        head_scales: factors tried on the chosen heads instead of zero ablation (``mode="zero"``).
        max_ppl_cost: the largest relative perplexity rise allowed: the one-sided upper confidence
            bound of the cost on ``texts`` (:func:`perplexity_cost`) must not exceed it.
        ppl_z: normal quantile of that bound (0: the cost measured on ``texts`` itself).
        min_gain: smallest rise of train answer probability that counts.
        batch_size: prompts per forward pass.

    Returns:
        ``(chosen, candidates, trace)``: the chosen :class:`Mitigation`, every candidate by
        method name, and one row per measured candidate (train accuracy, answer probability,
        perplexity cost, chosen).
    """
    if method not in METHODS:
        raise InterpError(f"mitigation method must be one of {', '.join(METHODS)}, not {method!r}")
    base = _pool([(a.answer_prob, a.correct) for a in train])
    rows: list[dict[str, Any]] = [{"method": "none", "setting": "", "accuracy": base[0], "answer_prob": base[1]}]
    cands: dict[str, Mitigation] = {"none": Mitigation()}
    heads: list[Head] = []
    if method in ("auto", "heads", "both"):
        heads, steps = select_suppressor_heads(model, train, max_heads, mode, scale, means, metric, min_gain, batch_size)
        for r in steps[steps["step"] != "base"].itertuples():
            rows.append({"method": f"heads ({r.step})", "setting": r.heads, "accuracy": r.accuracy, "answer_prob": r.answer_prob})
        if heads:
            cands["heads"] = Mitigation("heads", heads, mode, scale, means)
    freq_score: Optional[tuple[float, float]] = None
    if method in ("auto", "frequency", "both") and freq is not None:
        d = frequency_direction(model, freq)
        scored = []
        per_set = [projected_readouts(model, a, d, gammas) for a in train]  # one product with W_U for every factor
        for j, g in enumerate(gammas):
            s = _pool([got[j] for got in per_set])
            rows.append({"method": "frequency (candidate)", "setting": f"gamma {g:g}", "accuracy": s[0], "answer_prob": s[1]})
            scored.append((s[1], g, s))
        _, g, freq_score = max(scored)
        cands["frequency"] = Mitigation("frequency", direction=d, gamma=g)
    f = cands.get("frequency")
    head_variants: list[tuple[Mitigation, tuple[float, float]]] = []
    boths: list[tuple[Mitigation, tuple[float, float]]] = []  # each head setting with the projection
    if heads:
        kept = steps[(steps["step"] == "measured") & steps["kept"]].iloc[-1]
        settings: list[tuple[Mitigation, Optional[tuple[float, float]]]] = [
            (cands["heads"], (float(kept["accuracy"]), float(kept["answer_prob"])))]
        if mode == "zero":  # rescaling instead of removing: a smaller change, a smaller perplexity cost
            settings += [(Mitigation("heads", heads, "scale", a), None) for a in head_scales]
        for h, known in settings:
            if f is None:
                head_variants.append((h, known or measure_mitigation(model, train, h, batch_size)))
                continue
            # one pass per head setting: "both" (the setting with the projection) is read from its logits
            parts = [evaluate_recall_projected(model, a, h, [(f.direction, f.gamma)], batch_size, desc=f"train {h.method}")
                     for a in train]
            head_variants.append((h, known or _pool([q[0] for q in parts])))
            boths.append((with_projection(h, f.direction, f.gamma), _pool([q[1] for q in parts])))
    variants = list(head_variants)
    if f is not None and freq_score is not None:
        variants.append((f, freq_score))
    variants += boths
    if boths:
        cands["both"] = boths[0][0]
    first = len(rows)
    rows += [{"method": v.method, "setting": v.describe(), "accuracy": sc[0], "answer_prob": sc[1]} for v, sc in variants]
    trace = pd.DataFrame(rows)
    trace["ppl_cost"] = float("nan")
    trace["ppl_cost_upper"] = float("nan")
    trace["chosen"] = False
    order = [k for k in sorted(range(len(variants)), key=lambda k: -variants[k][1][1])
             if (method == "auto" or variants[k][0].method == method) and variants[k][1][0] >= base[0]
             and variants[k][1][1] > base[1] + min_gain]
    tail = text_tail(model, texts, model.n_layers - 1) if order else None  # every candidate acts in the last block only
    nlls: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # candidate index (-1: the model as it is) -> per-text NLLs

    def nll_of(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-text NLLs of candidate ``k``: one pass for it and every other candidate in line that
        shares its head setting (the model as it is, ``k = -1``, rides with the ones that change no head)."""
        if k not in nlls:
            key = () if k < 0 else _head_key(variants[k][0])
            group = ([-1] if key == () else []) + [j for j in order if _head_key(variants[j][0]) == key and j not in nlls]
            got = text_nlls_many(model, texts, [variants[j][0] if j >= 0 else Mitigation() for j in group], tail=tail)
            nlls.update(zip(group, got))
        return nlls[k]

    chosen, where = cands["none"], 0
    for k in order:
        v = variants[k][0]
        cost, upper = perplexity_cost(nll_of(-1)[0], nll_of(k)[0], nll_of(-1)[1], ppl_z) if texts else (float("nan"),) * 2
        trace.loc[first + k, ["ppl_cost", "ppl_cost_upper"]] = [cost, upper]
        if not texts or upper <= max_ppl_cost:
            chosen, where = v, first + k
            break
    if chosen.heads:  # "heads" and "both" report the chosen head setting, so they share its text pass
        key = _head_key(chosen)
        cands["heads"] = next(h for h, _ in head_variants if _head_key(h) == key)
        if boths:
            cands["both"] = next(b for b, _ in boths if _head_key(b) == key)
    trace.loc[where, "chosen"] = True
    return chosen, cands, trace


def mitigation_table(
    model: Model,
    sets: dict[tuple[str, str], RecallActivations],
    mit: Mitigation,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Accuracy and mean answer probability before and after a mitigation, per fact set, shot form
    and relation (:func:`mitigation_tables` for the one mitigation).

    Args:
        model: the model.
        sets: ``(facts, shots)`` label -> activations of those prompts (e.g. ``("test", "zero-shot")``).
        mit: the mitigation.
        batch_size: prompts per forward pass.

    Returns:
        One row per (facts, shots, relation) (relation ``"all"`` pools them), with ``method``.
    """
    return mitigation_tables(model, sets, [mit], batch_size)


def mitigation_tables(
    model: Model,
    sets: dict[tuple[str, str], RecallActivations],
    mits: Sequence[Mitigation],
    batch_size: int = 32,
) -> pd.DataFrame:
    """:func:`mitigation_table` of each of ``mits``, one after the other, sharing passes: real hooked
    forward passes, one per head setting per prompt set, whose frequency projections are read from
    that pass (:func:`evaluate_recall_projected`, which reads the projection alone exactly from the
    capture, :func:`projected_readout`, and the model as it is from the capture itself)."""
    after: dict[tuple[int, tuple[str, str]], tuple[torch.Tensor, torch.Tensor]] = {}
    groups: dict[Any, list[int]] = {}
    for i, m in enumerate(mits):
        groups.setdefault(_head_key(m), []).append(i)
    for key, (facts, label) in ((k, s) for s in sets for k in groups):
        acts, idx = sets[(facts, label)], groups[key]
        proj = [i for i in idx if mits[i].direction is not None and mits[i].gamma]
        base = _heads_part(mits[idx[0]])
        got = evaluate_recall_projected(model, acts, base, [(mits[i].direction, mits[i].gamma) for i in proj],
                                        batch_size, desc=f"{mits[idx[0]].method} {facts} {label}")
        for i in idx:
            after[(i, (facts, label))] = got[1 + proj.index(i)] if i in proj else got[0]
    rows = []
    for i, mit in enumerate(mits):
        for (facts, label), acts in sets.items():
            after_p, after_ok = after[(i, (facts, label))]
            rels = [f.relation for f in acts.prompts.facts]
            for rel in ["all"] + acts.prompts.relations:
                idx_t = torch.tensor([k for k, r in enumerate(rels) if rel == "all" or r == rel])
                rows.append({"method": mit.method, "facts": facts, "shots": label, "relation": rel, "n": len(idx_t),
                             "accuracy_base": float(acts.correct[idx_t].float().mean()),
                             "accuracy_mitigated": float(after_ok[idx_t].float().mean()),
                             "answer_prob_base": float(acts.answer_prob[idx_t].mean()),
                             "answer_prob_mitigated": float(after_p[idx_t].mean())})
    return pd.DataFrame(rows)


def recall_params(quick: bool = True, shots: int = 3, relations: Optional[Sequence[str]] = None, **params: Any) -> dict[str, Any]:
    """Every parameter of ``interp run recall`` (quick or full sizes) with these set: the sizes the
    mitigation is chosen and measured at, so that :func:`auto_mitigation` (and with it
    :func:`mitigate` and ``interp ablate-final-heads``) choose as the run does."""
    from interp.recall.params import PARAMS
    from interp.recall.pipeline import resolve_params  # the pipeline imports this module

    given = PARAMS.validate({"relations": list(relations) if relations else None, "shots": shots, **params}, quick)
    return resolve_params(given, quick)


def train_activations(model: Model, quick: bool = True, shots: int = 3, relations: Optional[Sequence[str]] = None,
                      batch_size: int = 32, **params: Any) -> list[RecallActivations]:
    """Zero- and few-shot train-fact prompts, last layer captured, at the sizes of ``interp run recall``
    (:func:`recall_params`: under ``quick`` the first 24 facts per relation and the canonical template;
    otherwise every fact and all ten lead-ins), so both choose alike."""
    return _train_sets(model, recall_params(quick, shots, relations, **params), batch_size)


def _train_sets(model: Model, p: dict[str, Any], batch_size: int) -> list[RecallActivations]:
    """:func:`train_activations` for resolved recall parameters ``p``."""
    from interp.recall.pipeline import prompt_templates

    rels = load_relations(p["relations"], p["facts_file"])
    with torch.no_grad():
        return [collect_activations(model, build_prompts(model, rels, shots=s, templates=prompt_templates(p), max_facts=p["max_facts"],
                                                         split="train", path=p["facts_file"]),
                                    layers=[model.n_layers - 1], batch_size=batch_size) for s in (0, int(p["shots"]))]


_CHOICES: dict[tuple[Any, ...], Mitigation] = {}


def auto_mitigation(model: Model, method: str = "auto", quick: bool = True, shots: int = 3,
                    relations: Optional[Sequence[str]] = None, frequency_source: str = "wikipedia",
                    selection_texts: Optional[int] = None, **params: Any) -> Mitigation:
    """The mitigation chosen on the packaged train facts, as ``interp run recall`` chooses it
    (remembered per model and arguments).

    Args:
        model: the model.
        method: ``auto``, ``heads``, ``frequency``, ``both`` or ``none`` (see :func:`choose_mitigation`).
        quick: the quick run's sizes (train facts, head rescalings tried, paragraphs); otherwise the
            full run's (see :func:`train_activations`).
        shots: demonstrations in the few-shot form.
        relations: relation names (default: all).
        frequency_source: :func:`interp.frequency.token_frequency` source for the frequency direction.
        selection_texts: training paragraphs for the perplexity constraint (None: the run's, 8 quick
            or 128 full).
        **params: other ``interp run recall`` parameters the choice reads (``max_facts``,
            ``templates``, ``head_scales``, ``text_corpus``, ``mitigation_mode``, ...), checked as
            ``--set`` checks them.

    Returns:
        The chosen :class:`Mitigation`.
    """
    if selection_texts is not None:
        params["selection_texts"] = selection_texts
    p = recall_params(quick, shots, relations, frequency_source=frequency_source, **params)
    key = (id(model), method, quick, json.dumps(p, sort_keys=True, default=str))
    if key in _CHOICES:
        return _CHOICES[key]
    train = _train_sets(model, p, int(p["batch_size"]))
    freq = sources.token_frequency(model, p["frequency_source"]) if method in ("auto", "frequency", "both") else None
    texts = sources.texts(p["text_corpus"], "train")[0][: int(p["selection_texts"])] if p["selection_texts"] else []
    last = model.n_layers - 1
    means = train[0].z[:, train[0].layer_index(last)].float().mean(0) if p["mitigation_mode"] == "mean" else None
    with torch.no_grad():
        chosen, _, _ = choose_mitigation(model, train, freq, texts, method, p["mitigation_mode"], float(p["mitigation_scale"]), means,
                                         p["max_suppressor_heads"], p["selection_metric"], head_scales=HEAD_SCALES[: int(p["head_scales"])],
                                         ppl_z=float(p["ppl_bound_z"]), batch_size=int(p["batch_size"]))
    _CHOICES[key] = chosen
    return chosen


@contextmanager
def mitigate(model: Model, method: str = "auto", **kwargs: Any) -> Iterator[Model]:
    """Apply the mitigation chosen on the train facts to everything run on ``model`` inside the block::

        with interp.recall.mitigate(model, method="auto"):
            interp.greedy_generate(model, ["The capital of France is"])

    Args:
        model: the model.
        method: ``auto`` (the best of heads / frequency / both on the train facts, or none),
            ``heads``, ``frequency``, ``both``, ``none``; or a :class:`Mitigation` to apply as is.
        **kwargs: passed to :func:`auto_mitigation` (``quick``, ``shots``, ``relations``,
            ``frequency_source``, ``selection_texts`` and other ``interp run recall`` parameters).

    Yields:
        The model, with the mitigation active.
    """
    mit = method if isinstance(method, Mitigation) else auto_mitigation(model, method, **kwargs)
    with model.hooks(mit.hooks(model)):
        yield model
