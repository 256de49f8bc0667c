import json

import pandas as pd
import pytest

from interp import InterpError

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


def test_scan_of_a_stated_random_sample(tiny_models, tmp_path):
    from interp.glitch.scan import sample_ids

    m = tiny_models["gpt2"]
    tpl = repeat_template(m, shots=())
    ids = sample_ids(m.d_vocab, 40, seed=3)
    assert ids == sorted(set(ids)) and len(ids) == 40 and ids != list(range(40)) and ids == sample_ids(m.d_vocab, 40, seed=3)
    work, out = tmp_path / "work", tmp_path / "out"
    table, meta = exhaustive_scan(m, work, chunk_size=16, max_new_tokens=2, template=tpl, out_folder=out, sample=40, sample_seed=3)
    assert list(table.token_id) == ids
    assert meta["sample"]["n"] == 40 and meta["sample"]["seed"] == 3 and meta["sample"]["of"] == m.d_vocab == meta["vocab_size"]
    assert sorted(p.name for p in work.glob("*.csv.gz")) == ["sample_000000.csv.gz", "sample_000016.csv.gz", "sample_000032.csv.gz"]
    stored, _ = load_ground_truth(m.spec, out)
    assert list(stored.token_id) == ids
    # the work folder remembers its draw: chunks of another sample are never mixed in
    with pytest.raises(InterpError, match="another sample"):
        exhaustive_scan(m, work, chunk_size=16, max_new_tokens=2, template=tpl, out_folder=out, sample=40, sample_seed=4)
    with pytest.raises(InterpError, match="sample needs"):
        sample_ids(10, 11)


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


def test_consensus_scan_continues_the_stored_label_as_a_cascade(tiny_models, tmp_path):
    from interp.glitch.consensus import PAPER_PROMPT, PAPER_REPLY, SINGLE_PROMPT
    from interp.glitch.scan import consensus_scan, load_consensus

    m = tiny_models["gpt2"]
    work, out = tmp_path / "work", tmp_path / "out"
    # prompts short enough for the tiny model's 256-token context
    tpls = {SINGLE_PROMPT: repeat_template(m, shots=("a",)), "other": repeat_template(m, shots=("b",)),
            "paper": repeat_template(m, prompt=PAPER_PROMPT, reply=PAPER_REPLY, shots=())}
    truth, _ = exhaustive_scan(m, work / "scan", chunk_size=32, limit=32, max_new_tokens=2, template=tpls[SINGLE_PROMPT],
                               out_folder=out)
    later = ["other", "paper"]
    table, meta = consensus_scan(m, work / "cons", templates=tpls, chunk_size=8, max_new_tokens=2, folder=out, out_folder=out)
    cand = truth[truth.cls.isin(["glitch", "normal"])]
    assert list(table.token_id) == cand.token_id.tolist() and (table[SINGLE_PROMPT].to_numpy() == cand.cls.to_numpy()).all()
    # a prompt is asked exactly where every earlier prompt said glitch, and the label is glitch only under all
    still = table[SINGLE_PROMPT] == "glitch"
    for n in later:
        assert ((table[n] != "") == still).all()
        still &= table[n] == "glitch"
    assert ((table.consensus_all == "glitch") == still).all()
    assert meta["prompts"] == [SINGLE_PROMPT, *later] and meta["calls"][later[0]] == int((cand.cls == "glitch").sum())
    assert sum(meta["counts_consensus_all"].values()) == len(table)
    # resumable: finished chunks are not asked again
    chunks = sorted((work / "cons").iterdir())
    stamps = [p.stat().st_mtime_ns for p in chunks]
    chunks[-1].unlink()
    table2, _ = consensus_scan(m, work / "cons", templates=tpls, chunk_size=8, max_new_tokens=2, folder=out, out_folder=out)
    assert [p.stat().st_mtime_ns for p in chunks[:-1]] == stamps[:-1]
    pd.testing.assert_frame_equal(table, table2)
    stored, meta2 = load_consensus(m.spec, out)
    pd.testing.assert_frame_equal(stored, table2)
    # a ground truth made with another prompt is refused
    exhaustive_scan(m, work / "other", chunk_size=32, limit=32, max_new_tokens=2, template=repeat_template(m, shots=()),
                    out_folder=tmp_path / "other")
    with pytest.raises(InterpError, match="another prompt"):
        consensus_scan(m, work / "x", templates=tpls, folder=tmp_path / "other", out_folder=tmp_path / "other")
    with pytest.raises(InterpError, match="first"):
        consensus_scan(m, work / "x", templates={"paper": tpls["paper"]}, folder=out, out_folder=out)


def test_stored_consensus_follows_the_stored_single_prompt_label():
    from interp.glitch.scan import load_consensus

    truth, _ = load_ground_truth("smollm2-135m")
    cons, meta = load_consensus("smollm2-135m")
    cand = truth[truth.cls.isin(["glitch", "normal"])]
    assert list(cons.token_id) == cand.token_id.tolist() and (cons.few_shot.to_numpy() == cand.cls.to_numpy()).all()
    assert meta["prompts"] == ["few_shot", "other_examples", "paper_few_shot", "paper"]
    g = cons.consensus_all == "glitch"
    assert meta["counts_consensus_all"]["glitch"] == int(g.sum()) and 0.02 < g.mean() < cons.few_shot.eq("glitch").mean()
    assert (cons.loc[g, meta["prompts"]] == "glitch").all().all()
    assert meta["weight_hash"] == load_ground_truth("smollm2-135m")[1]["weight_hash"]
