"""Per-layer Wasserstein distance between glitch and normal activation features; key layers.

GlitchProber measures, layer by layer, how far apart the activation distributions of glitch and
normal tokens are, and builds its detector and repair on the layers where they differ most. Here
each feature dimension is standardised by the pooled (glitch + normal) standard deviation, the 1-D
Wasserstein-1 distance between the two groups is computed per dimension (from their quantile
functions), and the layer's distance for a feature kind is the mean over its dimensions.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
from jaxtyping import Bool, Float

from interp.errors import InterpError
from interp.glitch.features import GlitchFeatures


def wasserstein_1d(
    a: Float[np.ndarray, "n_a feature"], b: Float[np.ndarray, "n_b feature"], n_quantiles: int = 256
) -> Float[np.ndarray, "feature"]:
    """Wasserstein-1 distance between the columns of ``a`` and ``b`` (empirical distributions).

    Computed as the mean absolute difference of the two quantile functions on a midpoint grid of
    ``n_quantiles`` levels (exact for equal-size samples when ``n_quantiles`` equals their size).
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InterpError(f"need two [n, feature] arrays of equal width, got {a.shape} and {b.shape}")
    if len(a) == 0 or len(b) == 0:
        raise InterpError("both groups need at least one sample")
    u = (np.arange(n_quantiles) + 0.5) / n_quantiles
    qa = np.quantile(a, u, axis=0)
    qb = np.quantile(b, u, axis=0)
    return np.abs(qa - qb).mean(axis=0)


def layer_distances(
    features: GlitchFeatures, is_glitch: Bool[np.ndarray, "n"], n_quantiles: int = 256
) -> pd.DataFrame:
    """Standardised Wasserstein distance between glitch and normal tokens, per layer and kind.

    Args:
        features: features of labelled tokens.
        is_glitch: True for glitch tokens (the rest are normal).
        n_quantiles: quantile grid size (see :func:`wasserstein_1d`).

    Returns:
        A frame with columns ``layer, kind, distance`` (mean over the kind's dimensions).
    """
    y = np.asarray(is_glitch, dtype=bool)
    if len(y) != len(features.token_ids):
        raise InterpError(f"{len(y)} labels for {len(features.token_ids)} tokens")
    if y.all() or not y.any():
        raise InterpError("layer distances need both glitch and normal tokens")
    rows = []
    for (L, kind), x in sorted(features.blocks.items()):
        sd = x.std(axis=0)
        keep = sd > 1e-8
        if not keep.any():
            rows.append({"layer": L, "kind": kind, "distance": 0.0})
            continue
        z = x[:, keep] / sd[keep]
        d = wasserstein_1d(z[y], z[~y], n_quantiles)
        rows.append({"layer": L, "kind": kind, "distance": float(d.mean())})
    return pd.DataFrame(rows)


def key_layers(distances: pd.DataFrame, n_layers: Optional[int] = None, fraction: float = 0.2) -> list[int]:
    """The layers where glitch and normal tokens differ most.

    Each kind's distances are scaled to their maximum over layers, averaged over kinds, and the
    ``n_layers`` (default: ``fraction`` of the layers, at least one) highest layers are kept.

    Args:
        distances: output of :func:`layer_distances`.
        n_layers: how many key layers.
        fraction: share of the layers to keep when ``n_layers`` is None.

    Returns:
        Sorted layer indices.
    """
    if distances.empty:
        raise InterpError("no layer distances")
    score = layer_scores(distances)
    k = n_layers if n_layers is not None else max(1, int(round(fraction * len(score))))
    if not 1 <= k <= len(score):
        raise InterpError(f"cannot pick {k} key layers out of {len(score)}")
    return sorted(int(L) for L in score.sort_values(ascending=False).index[:k])


def layer_scores(distances: pd.DataFrame) -> pd.Series:
    """Per-layer score: each kind's distance scaled by its maximum over layers, averaged over kinds."""
    wide = distances.pivot(index="layer", columns="kind", values="distance")
    return (wide / wide.max().replace(0, 1)).mean(axis=1)


def select_layers(features: GlitchFeatures, layers: Sequence[int]) -> GlitchFeatures:
    """The features of a subset of layers."""
    missing = set(layers) - set(features.layers)
    if missing:
        raise InterpError(f"features have no layers {sorted(missing)}")
    keep = set(layers)
    return GlitchFeatures(features.token_ids, {k: v for k, v in features.blocks.items() if k[0] in keep}, features.position,
                          features.seconds)
