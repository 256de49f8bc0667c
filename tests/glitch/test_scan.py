import json

import pandas as pd

from interp.glitch.oracle import TOKEN_CLASSES, repeat_template
from interp.glitch.scan import exhaustive_scan, load_ground_truth


def test_scan_is_resumable_and_sharded(tiny_models, tmp_path):
    m = tiny_models["gpt2"]
    work, out = tmp_path / "work", tmp_path / "out"
    tpl = repeat_template(m, shots=())
    assert exhaustive_scan(m, work, chunk_size=16, limit=48, max_new_tokens=3, template=tpl, out_folder=out, shard=(1, 2)) is None
    assert sorted(p.name for p in work.iterdir()) == ["chunk_000016.csv.gz"]
    table, meta = exhaustive_scan(m, work, chunk_size=16, limit=48, max_new_tokens=3, template=tpl, out_folder=out, shard=(0, 2))
    assert list(table.token_id) == list(range(48))
    stamp = (work / "chunk_000016.csv.gz").stat().st_mtime_ns
    (work / "chunk_000032.csv.gz").unlink()
    table2, _ = exhaustive_scan(m, work, chunk_size=16, limit=48, max_new_tokens=3, template=tpl, out_folder=out)
    assert (work / "chunk_000016.csv.gz").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(table.drop(columns=["seconds", "load"]), table2.drop(columns=["seconds", "load"]))
    stored, meta2 = load_ground_truth(m.spec, out)
    assert list(stored.columns) == ["token_id", "token", "cls", "generated"]
    assert meta2["vocab_size"] == 48 and meta2["oracle"]["max_new_tokens"] == 3
    assert json.loads((out / f"{m.spec}_ground_truth.json").read_text())["weight_hash"] == m.weight_hash


def test_stored_ground_truth_is_complete():
    truth, meta = load_ground_truth("smollm2-135m")
    assert list(truth.token_id) == list(range(49152))
    assert set(truth.cls) <= set(TOKEN_CLASSES)
    assert meta["vocab_size"] == 49152 and meta["wall_time_s"] > 0
    assert meta["counts"]["glitch"] == int((truth.cls == "glitch").sum()) > 100
    judged = truth[truth.cls.isin(["glitch", "normal"])]
    assert (judged.generated.str.len() > 0).mean() > 0.99
    assert (truth.loc[truth.cls == "special", "generated"] == "").all()
    for k in ("template", "decision_rule", "max_new_tokens"):
        assert k in meta["oracle"]
    assert meta["weight_hash"]
