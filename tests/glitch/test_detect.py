import numpy as np
import pytest

from interp import InterpError
from interp.glitch.detect import glitch_prober, precision_recall, train_detector
from interp.glitch.oracle import repeat_template
from interp.glitch.scan import load_ground_truth


def test_detector_separates_planted_classes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 120)).astype(np.float32)
    y = np.arange(400) % 5 == 0
    X[y, :10] += 4.0
    det = train_detector(X[:200], y[:200], n_components=20)
    pred = det.predict(X[200:]).astype(bool)
    assert (pred == y[200:]).mean() > 0.95
    assert det.named_steps["pca"].n_components_ == 20
    with pytest.raises(InterpError):
        train_detector(X[:10], np.zeros(10, bool))


def test_precision_recall():
    s = precision_recall([1, 2, 3, 4], [2, 3, 5])
    assert s["precision"] == 0.5 and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_prober_flow_on_tiny_model(tiny_models):
    m = tiny_models["gpt2"]
    calls = []

    def labeller(ids):
        calls.append(list(ids))
        return ["glitch" if i % 3 == 0 else "normal" for i in ids]

    det = glitch_prober(m, range(0, 120), sample_ratio=0.4, n_components=10, labeller=labeller, chunk_size=16,
                        key_layer_fraction=0.4, seed=0, template=repeat_template(m, shots=()))
    t = det.table
    assert set(det.timings) >= {"labelling", "features", "training", "prediction", "verification"}
    assert len(det.key_layers) == 1 and 0 <= det.key_layers[0] < m.n_layers
    assert sorted(calls[0]) == sorted(t.loc[t.in_sample, "token_id"])
    assert sorted(calls[1]) == sorted(t.loc[t.predicted, "token_id"])
    assert not (t.predicted & t.in_sample).any()
    assert all(i % 3 == 0 for i in det.glitch_ids)
    assert det.projection.shape == (len(t), 10)
    assert set(det.excluded.cls) <= {"special", "whitespace", "partial_utf8"}
    assert len(t) + len(det.excluded) == 120


@pytest.mark.real_model
def test_prober_scores_rank_glitch_tokens(smollm):
    from sklearn.metrics import roc_auc_score

    truth, _ = load_ground_truth("smollm2-135m")
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(len(truth), 1000, replace=False))
    cls = dict(zip(truth.token_id, truth.cls))
    det = glitch_prober(smollm, ids.tolist(), sample_ratio=0.4, layers=[14, 16, 19], n_components=40,
                        labeller=lambda t: [cls[i] for i in t], seed=0)
    t = det.table
    true = [i for i in t.token_id if cls[i] == "glitch"]
    s = precision_recall(det.glitch_ids, true)
    assert s["precision"] == 1.0
    rest = t[~t.in_sample]
    assert roc_auc_score(rest.token_id.map(cls) == "glitch", rest.score) > 0.65
