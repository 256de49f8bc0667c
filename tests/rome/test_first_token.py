import pytest
import torch

from interp.rome.compute_u import key_hook
from interp.rome.first_token import (
    PositionSplit, first_token_anomaly, first_token_split, layer_anomaly_table, projection_2d, whitened_norms,
)


def test_anomaly_statistics_on_known_vectors():
    g = torch.Generator().manual_seed(0)
    later = torch.randn(200, 8, generator=g)
    first = torch.randn(10, 8, generator=g) * 0.1 + torch.tensor([20.0] + [0.0] * 7)
    a = first_token_anomaly(PositionSplit(first, later))
    assert a["centroid_distance_z"] > 5 and a["norm_ratio"] > 5
    same = first_token_anomaly(PositionSplit(later[:10], later[10:]))
    assert 0.5 < same["centroid_distance_z"] < 1.5
    wn = whitened_norms(torch.eye(3) * 2, torch.eye(3) / 4)
    torch.testing.assert_close(wn, torch.ones(3))
    fit, (proj,), ev = projection_2d(torch.cat([later, first]), first)
    assert fit.shape == (210, 2) and proj.shape == (10, 2) and ev[0] > ev[1]
    assert abs(proj[:, 0].mean()) > 3 * abs(fit[:200, 0]).mean()


def test_split_and_table_run_on_tiny(tiny):
    texts = tiny.encode(["Hello world again", "Some other text"])
    split = first_token_split(tiny, texts, [key_hook(1)], first_position=1 if tiny.prepend_bos else 0)[key_hook(1)]
    n = len(texts[0]) + len(texts[1]) - 2 * (2 if tiny.prepend_bos else 1)
    assert split.first.shape == (2, tiny.d_mlp) and split.later.shape == (n, tiny.d_mlp)
    rows = layer_anomaly_table(tiny, texts, [0, 2])
    assert [(r["layer"], r["kind"]) for r in rows] == [(0, "mlp_key"), (0, "resid_post"), (2, "mlp_key"), (2, "resid_post")]


@pytest.mark.real_model
def test_first_token_keys_are_anomalous_in_smollm(smollm):
    from interp import corpus

    texts = [t[:32] for t in smollm.encode(corpus.generic_texts()[:8])]
    rows = {(r["layer"], r["kind"]): r for r in layer_anomaly_table(smollm, texts, [6])}
    # in SmolLM2 the first-token MLP key is anomalously small (quick run: norm ratio 0.15)
    assert rows[(6, "mlp_key")]["norm_ratio"] < 0.5
