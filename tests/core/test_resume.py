"""A resumed run (every stage read back from JSON + safetensors + Parquet) equals the computed one."""

import json

import numpy as np
import pandas as pd

import interp
from interp import store
from interp.testing import tiny_model


def _tables(folder):
    return {p.name: p.read_text() for p in sorted((folder / "tables").glob("*.csv"))}


def _all_stored_stages_resumed(folder, man):
    stored = sorted(p.stem for p in (folder / "stages").glob("*.json"))
    assert len(stored) >= 4
    assert [s for s in stored if not man["stages"][s]["resumed"]] == []


def test_recall_resumed_equals_computed(tmp_path):
    m = tiny_model("llama")
    kw = dict(quick=True, png=False, relations=["country_capital", "element_symbol"], max_facts=4, ppl_texts=2, selection_texts=2, independent_facts=2,
              n_random=1, analyse="all", top_k_heads=2, shots=2)
    first = interp.run("recall", m, out=tmp_path, **kw)
    tables = _tables(tmp_path / "recall")
    again = interp.run("recall", m, out=tmp_path, **kw)
    man = json.loads((tmp_path / "recall/manifest.json").read_text())
    _all_stored_stages_resumed(tmp_path / "recall", man)
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
    assert _tables(tmp_path / "recall") == tables
    assert not list((tmp_path / "recall").rglob("*.pkl"))


def test_rome_resumed_equals_computed(tmp_path):
    m = tiny_model("gpt2")
    kw = dict(quick=True, png=False, n_requests=2, v_steps=2, cov_tokens=256, country_requests=0, ppl_generic=2, ppl_generations=2,
              first_token_texts=2)
    first = interp.run("rome", m, out=tmp_path, **kw)
    tables = _tables(tmp_path / "rome")
    again = interp.run("rome", m, out=tmp_path, **kw)
    man = json.loads((tmp_path / "rome/manifest.json").read_text())
    _all_stored_stages_resumed(tmp_path / "rome", man)
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
    assert _tables(tmp_path / "rome") == tables


def test_glitch_detection_round_trips(tmp_path):
    from sklearn.svm import SVC

    from interp.glitch.detect import Detection

    det = Detection(
        table=pd.DataFrame({"token_id": [1, 2], "in_sample": [True, False], "oracle": ["glitch", ""],
                            "score": [float("nan"), 0.3], "predicted": [False, True], "glitch": [True, False]}),
        key_layers=[1, 2], distances=pd.DataFrame({"layer": [0], "kind": ["pattern"], "distance": [0.5]}),
        projection=np.ones((2, 3), np.float32), timings={"labelling": 1.0},
        excluded=pd.DataFrame({"token_id": pd.Series([], dtype=int), "cls": pd.Series([], dtype=object)}),
        detector=SVC(), settings={"kinds": ["pattern"], "n_components": 3},
    )
    dropped = store.save_stage(tmp_path, "detection", "k", det, 1.0)
    assert len(dropped) == 1 and "detector" in dropped[0]
    got, _ = store.load_stage(tmp_path, "detection", "k")
    assert isinstance(got, Detection) and got.detector is None
    pd.testing.assert_frame_equal(got.table, det.table)
    pd.testing.assert_frame_equal(got.excluded, det.excluded)
    np.testing.assert_array_equal(got.projection, det.projection)
    assert got.key_layers == det.key_layers and got.settings == det.settings and got.glitch_ids == det.glitch_ids
