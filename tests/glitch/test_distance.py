import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from interp import InterpError
from interp.glitch.distance import key_layers, layer_distances, wasserstein_1d
from interp.glitch.features import GlitchFeatures


def test_wasserstein_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 3)), rng.normal(1.0, 2.0, size=(200, 3))
    ours = wasserstein_1d(a, b, n_quantiles=200)
    ref = [wasserstein_distance(a[:, j], b[:, j]) for j in range(3)]
    assert np.allclose(ours, ref, rtol=0.02)


def test_planted_layer_is_key():
    rng = np.random.default_rng(1)
    y = np.arange(300) % 4 == 0
    blocks = {}
    for L in range(6):
        for kind in ("pattern", "mlp_gate"):
            x = rng.normal(size=(300, 20)).astype(np.float32)
            if L == 4:
                x[y] += 2.0
            blocks[(L, kind)] = x
    d = layer_distances(GlitchFeatures(list(range(300)), blocks, "token"), y)
    assert d.groupby("layer").distance.mean().idxmax() == 4
    assert key_layers(d, 1) == [4]
    assert len(key_layers(d, fraction=0.5)) == 3
    with pytest.raises(InterpError):
        layer_distances(GlitchFeatures(list(range(300)), blocks, "token"), np.zeros(300, bool))
