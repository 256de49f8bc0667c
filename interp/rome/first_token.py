"""The first-token analysis: first-position representations are far from all later ones.

In autoregressive models the representation at a sequence's first position (no BOS before it)
sits apart from every later position's, in the MLP keys and in the residual stream. A subject
that is the prompt's first token therefore has an anomalous unprefixed key k^u, while the
prefixed key k̄ (the subject behind a generated prefix) looks like any other key. This module
measures that per layer on fixed texts and projects the keys to 2-D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from jaxtyping import Float

import interp
from interp.errors import InterpError
from interp.model import Model
from interp.rome.compute_u import key_hook


@dataclass
class PositionSplit:
    """Vectors of one hook split by position: each text's first token vs its later tokens."""

    first: Float[torch.Tensor, "n_texts d"]
    later: Float[torch.Tensor, "n_later d"]


def first_token_split(
    model: Model, texts: Sequence[Sequence[int]], hooks: Sequence[str], batch_size: int = 16, first_position: int = 0
) -> dict[str, PositionSplit]:
    """Capture ``hooks`` at every position of ``texts`` and split first-token from later vectors.

    Args:
        model: the model handle.
        texts: token id lists (encoded with the model's BOS policy).
        hooks: hook names.
        batch_size: texts per forward pass.
        first_position: the index counted as "first" (1 when the model prepends BOS).

    Returns:
        hook name -> :class:`PositionSplit`.
    """
    if not texts:
        raise InterpError("first-token analysis needs texts")
    cap = interp.capture(model, list(texts), hooks=list(hooks), positions="all", batch_size=batch_size, progress=False)
    out = {}
    for h in hooks:
        rows = [x.float() for x in cap.acts[h] if x.shape[0] > first_position + 1]
        if not rows:
            raise InterpError("every text is too short for a first-vs-later split")
        out[h] = PositionSplit(
            torch.stack([x[first_position] for x in rows]), torch.cat([x[first_position + 1 :] for x in rows])
        )
    return out


def first_token_anomaly(split: PositionSplit) -> dict:
    """How far first-token vectors sit from later ones.

    Returns:
        ``norm_first`` / ``norm_later`` (mean L2 norms) and their ratio; ``centroid_distance_z``:
        the first tokens' mean distance to the later-token centroid in units of the later tokens'
        own mean distance to it; ``cosine_to_later_mean``: mean cosine of first tokens with the
        later-token centroid; ``later_cosine_to_later_mean`` for comparison.
    """
    mu = split.later.mean(0)
    d_first = (split.first - mu).norm(dim=-1)
    d_later = (split.later - mu).norm(dim=-1)
    nf, nl = split.first.norm(dim=-1).mean(), split.later.norm(dim=-1).mean()
    cos = torch.nn.functional.cosine_similarity
    return {
        "norm_first": float(nf),
        "norm_later": float(nl),
        "norm_ratio": float(nf / nl),
        "centroid_distance_z": float(d_first.mean() / d_later.mean()),
        "cosine_to_later_mean": float(cos(split.first, mu[None], dim=-1).mean()),
        "later_cosine_to_later_mean": float(cos(split.later, mu[None], dim=-1).mean()),
    }


def whitened_norms(keys: Float[torch.Tensor, "n d_mlp"], c_inv: Float[torch.Tensor, "d_mlp d_mlp"]) -> Float[torch.Tensor, "n"]:
    """sqrt(k^T C^-1 k): a key's size in the metric the ROME update uses."""
    k = keys.double()
    return ((k @ c_inv.double()) * k).sum(-1).clamp_min(0).sqrt().float()


def projection_2d(
    fit_on: Float[torch.Tensor, "n d"], *others: Float[torch.Tensor, "m d"], max_fit: int = 4000, seed: int = 0
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """PCA to 2-D fitted on ``fit_on`` (later-token keys plus first-token keys); ``others`` are
    projected with the same axes.

    Returns:
        ``(fit_coords, [coords of each other], explained_variance_ratio[2])``.
    """
    from sklearn.decomposition import PCA

    X = fit_on.double().numpy()
    rng = np.random.default_rng(seed)
    sel = rng.choice(len(X), size=min(max_fit, len(X)), replace=False)
    pca = PCA(n_components=2, random_state=seed).fit(X[sel])
    return pca.transform(X), [pca.transform(o.double().numpy()) for o in others], pca.explained_variance_ratio_


def layer_anomaly_table(model: Model, texts: Sequence[Sequence[int]], layers: Sequence[int], first_position: Optional[int] = None) -> list[dict]:
    """:func:`first_token_anomaly` of the MLP keys and residual stream at each layer (one capture)."""
    fp = (1 if model.prepend_bos else 0) if first_position is None else first_position
    hooks = []
    for L in layers:
        hooks += [key_hook(L), model.hook("resid_post", L)]
    split = first_token_split(model, texts, hooks, first_position=fp)
    rows = []
    for L in layers:
        for kind, h in (("mlp_key", key_hook(L)), ("resid_post", model.hook("resid_post", L))):
            rows.append({"layer": int(L), "kind": kind, **first_token_anomaly(split[h])})
    return rows


def first_token_report(
    model: Model, layer: int, k_u: Float[torch.Tensor, "n d_mlp"], k_bar: Float[torch.Tensor, "n d_mlp"],
    positions: Sequence[int], subjects: Sequence[str], c_inv: Float[torch.Tensor, "d_mlp d_mlp"],
    n_texts: int, max_tokens: int, layer_step: int = 1, texts: Optional[Sequence[str]] = None,
) -> dict:
    """The first-token anomaly at every ``layer_step``-th layer on held-out text, the 2-D projection
    of the requests' keys among text keys, and whitened key norms ``sqrt(kᵀC⁻¹k)``.

    Returns:
        ``table`` (per layer), ``points`` (projection rows), ``explained`` (variance of the two
        components) and ``whitened`` (mean whitened norms by group).
    """
    from interp import corpus as corpus_mod

    source = list(texts) if texts is not None else corpus_mod.generic_texts()
    texts = [t[:max_tokens] for t in model.encode(source[-n_texts:])]
    layers = sorted(set(range(0, model.n_layers, max(1, int(layer_step)))) | {layer})
    table = layer_anomaly_table(model, texts, layers)
    off = 1 if model.prepend_bos else 0
    split = first_token_split(model, texts, [key_hook(layer)], first_position=off)[key_hook(layer)]
    first_req = torch.tensor([pos == off for pos in positions])
    fit, (f_first, f_ku, f_kbar), ev = projection_2d(torch.cat([split.later, split.first]), split.first, k_u, k_bar)
    n_later = len(split.later)
    pts = [dict(group="later token (texts)", pc1=x, pc2=y, label="") for x, y in fit[:n_later]]
    pts += [dict(group="first token (texts)", pc1=x, pc2=y, label=model.tokenizer.decode([t[off]])) for (x, y), t in zip(f_first, texts)]
    for j, s in enumerate(subjects):
        g = "kᵘ, subject = first token" if bool(first_req[j]) else "kᵘ, subject later"
        pts.append(dict(group=g, pc1=f_ku[j, 0], pc2=f_ku[j, 1], label=s))
        pts.append(dict(group="k̄ (prefixed)", pc1=f_kbar[j, 0], pc2=f_kbar[j, 1], label=s))
    nan = float("nan")
    wn = {
        "whitened_norm_first_texts": float(whitened_norms(split.first, c_inv).mean()),
        "whitened_norm_later_texts": float(whitened_norms(split.later, c_inv).mean()),
        "whitened_norm_k_u_first": float(whitened_norms(k_u[first_req], c_inv).mean()) if first_req.any() else nan,
        "whitened_norm_k_u_later": float(whitened_norms(k_u[~first_req], c_inv).mean()) if (~first_req).any() else nan,
        "whitened_norm_k_bar": float(whitened_norms(k_bar, c_inv).mean()),
    }
    return {"table": table, "points": pts, "explained": [float(x) for x in ev], "whitened": wn}
