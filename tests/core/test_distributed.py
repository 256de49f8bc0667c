"""A scan over two torch.distributed ranks (gloo) equals the one-process scan."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from interp.distributed import World, init
from interp.testing import byte_tokenizer, tiny_hf_model


def test_one_process_is_rank_zero_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    w = init("cpu")
    assert (w.rank, w.size, w.is_main) == (0, 1, True)
    assert all(w.owns(k) for k in range(5))
    two = [World(rank=r, size=2) for r in (0, 1)]
    assert [k for k in range(6) if two[1].owns(k)] == [1, 3, 5]
    assert all(sum(w.owns(k) for w in two) == 1 for k in range(9))


def _scan(cmd_prefix, folder, work, out, env):
    args = [*cmd_prefix, "-m", "interp.glitch.scan", "--model", str(folder), "--work", str(work), "--out", str(out),
            "--limit", "48", "--chunk-size", "8", "--batch-size", "8", "--max-new-tokens", "3"]
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.mark.slow
def test_two_gloo_ranks_give_the_one_process_labels(tmp_path):
    folder = tmp_path / "tiny-llama"
    hf = tiny_hf_model("llama")
    hf.config.max_position_embeddings = 1024  # room for the oracle's few-shot prompt (rotary: no learned positions)
    hf.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    env = dict(os.environ, OMP_NUM_THREADS="1", INTERP_PROGRESS="0", INTERP_CACHE=str(tmp_path / "cache"))
    env.pop("WORLD_SIZE", None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _scan(torchrun, folder, tmp_path / "w2", tmp_path / "o2", env)
    _scan([sys.executable], folder, tmp_path / "w1", tmp_path / "o1", env)
    one = pd.read_csv(next((tmp_path / "o1").glob("*.csv.gz")), keep_default_na=False)
    two = pd.read_csv(next((tmp_path / "o2").glob("*.csv.gz")), keep_default_na=False)
    assert len(one) == 48
    pd.testing.assert_frame_equal(one, two)
    # both ranks wrote chunk files (per-shard stage files); rank 0 alone wrote the ground truth
    assert len(list((tmp_path / "w2").glob("chunk_*.csv.gz"))) == 6
    assert len(list((tmp_path / "o2").iterdir())) == 2


def test_map_chunks_resumes_stored_chunks_and_checks_their_key(tmp_path, monkeypatch):
    import torch

    from interp import distributed

    monkeypatch.setattr(distributed, "_WORLD", World())
    key = {"pass": "t"}
    distributed.save_chunk(tmp_path / "chunk_00001.safetensors", {"x": torch.tensor([10.0])}, {**key, "chunk": 1})
    distributed.save_chunk(tmp_path / "chunk_00002.safetensors", {"x": torch.tensor([99.0])}, {"pass": "other", "chunk": 2})
    calls = []

    def compute(k):
        calls.append(k)
        return {"x": torch.tensor([float(k)])}

    got = distributed.map_chunks(3, compute, tmp_path, key)
    assert calls == [0, 2]  # chunk 1 was stored under this key; chunk 2 under another, so recomputed
    assert [float(c["x"]) for c in got] == [0.0, 10.0, 2.0]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # rank 0 removes the spent chunk files


def test_map_chunks_stores_rows_as_stages_and_resumes_them(tmp_path, monkeypatch):
    """``values="stage"`` (ROME's edits: rows of numbers and strings): stored through interp.store,
    resumed under the same key, recomputed under another or when torn."""
    from interp import distributed
    from interp.errors import InterpError
    from interp.store import save_stage

    monkeypatch.setattr(distributed, "_WORLD", World())
    key = {"pass": "t"}
    save_stage(tmp_path, "chunk_00001", distributed._key_text({**key, "chunk": 1}), [{"case": "stored", "x": 1.5}], 0.0)
    save_stage(tmp_path, "chunk_00002", distributed._key_text({"pass": "other", "chunk": 2}), [{"case": "old"}], 0.0)
    calls = []

    def compute(k):
        calls.append(k)
        return [{"case": f"c{k}", "x": float("nan") if k == 0 else k / 3}]

    got = distributed.map_chunks(3, compute, tmp_path, key, values="stage")
    assert calls == [0, 2]
    assert got[1] == [{"case": "stored", "x": 1.5}] and got[2] == [{"case": "c2", "x": 2 / 3}]  # exact float round trip
    assert got[0][0]["case"] == "c0" and got[0][0]["x"] != got[0][0]["x"]  # NaN kept
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    with pytest.raises(InterpError, match="map_chunks: values"):
        distributed.map_chunks(1, compute, tmp_path, key, values="pickle")
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "chunk_00000.json").write_text('{"format": "interp-stage/1", "key": ')  # torn: recomputed
    calls.clear()
    assert distributed.map_chunks(1, compute, tmp_path, key, values="stage")[0][0]["case"] == "c0" and calls == [0]

def _tables(folder):
    out = {}
    for f in sorted(Path(folder).glob("tables/*.csv")):
        df = pd.read_csv(f, keep_default_na=False)
        out[f.name] = df.drop(columns=[c for c in df.columns if c.startswith("seconds")])
    return out


@pytest.mark.slow
def test_interp_run_under_torchrun_shares_the_recall_and_rome_passes(tmp_path):
    """`interp run recall` / `rome` under torchrun (two gloo ranks): rank 1 takes part in the activation
    pass and the key-statistics pass, and every table equals the one-process run's."""
    folder = tmp_path / "tiny-llama"
    tiny_hf_model("llama").save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    env = dict(os.environ, OMP_NUM_THREADS="1", INTERP_PROGRESS="0")
    env.pop("WORLD_SIZE", None)
    common = ["--model", str(folder), "--quick", "--no-png"]
    sets = {"recall": ['relations=["country_capital","element_symbol"]', "max_facts=8", "analyse=all", "frequency_source=model",
                       "ppl_texts=2", "selection_texts=2", "independent_facts=2", "n_random=1", "batch_size=2"],
            "rome": ["n_requests=2", "country_requests=0", "cov_tokens=3000", "v_steps=3", "v_contexts=2", "ppl_generic=2",
                     "ppl_generations=2", "first_token_texts=4"]}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for analysis, values in sets.items():
        args = ["-m", "interp.cli", "run", analysis, *common, *[a for v in values for a in ("--set", v)]]
        logs = {}
        for n, prefix in ((1, [sys.executable]), (2, torchrun)):
            r = subprocess.run([*prefix, *args, "--out", str(tmp_path / f"{analysis}{n}")], capture_output=True, text=True,
                               timeout=600, cwd=Path(__file__).parents[2],
                               env={**env, "INTERP_CACHE": str(tmp_path / f"cache{n}")})
            assert r.returncode == 0, r.stderr[-3000:]
            logs[n] = r.stderr
        assert "rank 1/2: took part in" in logs[2] and "took part in 0 " not in logs[2]
        if analysis == "rome":  # the key statistics, the requests' keys, then the edits (one request per rank)
            assert "rank 1/2: took part in 3 " in logs[2], logs[2][-2000:]
            stages = json.loads((tmp_path / "rome2" / "rome" / "manifest.json").read_text())["stages"]
            assert stages["edits"]["ranks"] == 2 and stages["edits"]["computed"] == 2
        one, two = _tables(tmp_path / f"{analysis}1" / analysis), _tables(tmp_path / f"{analysis}2" / analysis)
        assert one.keys() == two.keys() and len(one) > 3
        for name in one:
            pd.testing.assert_frame_equal(one[name], two[name], rtol=1e-6, obj=name)
        assert not (tmp_path / f"{analysis}2" / analysis / "shards").exists()
    from safetensors.torch import load_file

    c1, c2 = (load_file(str(next((tmp_path / f"cache{n}" / "stats").glob("*.safetensors")))) for n in (1, 2))
    assert c1.keys() == c2.keys() and len(c1) > 2  # the running snapshots too
    for k in c1:
        assert (c1[k] - c2[k]).abs().max() <= 1e-9 * c1[k].abs().max(), k


def _torchrun(tmp_path, script, *args, timeout=120):
    """Run ``script`` (text) as two gloo ranks under torchrun, one thread each."""
    env = dict(os.environ, OMP_NUM_THREADS="1", INTERP_PROGRESS="0")
    env.pop("WORLD_SIZE", None)
    path = tmp_path / "script.py"
    path.write_text(script)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(path),
                           *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parents[2])


_FEATURES_SCRIPT = r"""
import sys, numpy as np
from interp import distributed
from interp.glitch.detect import score_tokens, train_detector
from interp.glitch.features import glitch_features
from interp.glitch.oracle import repeat_template
from interp.testing import tiny_model

world = distributed.join("cpu")
model = tiny_model("llama")
if not world.is_main:
    n = distributed.serve(model)
    distributed.finish(world)  # leave only once rank 0 is done too (else gloo may abort this rank at exit)
    assert n == 1, n
    sys.exit(0)
ids = list(range(40, 100))
kw = dict(kinds=("pattern", "mlp_gate", "mlp_data"), position="token", template=repeat_template(model, shots=()), batch_size=8, progress=False)
X = glitch_features(model, ids[:24], [1, 2], **kw).matrix()
det = train_detector(X, np.arange(24) % 3 == 0, n_components=4)
shared = score_tokens(model, ids, [1, 2], kw, det, chunk_size=8, shard_dir=sys.argv[1])
distributed.release()
alone = score_tokens(model, ids, [1, 2], kw, det, chunk_size=8)
assert np.array_equal(shared["projection"], alone["projection"]) and np.array_equal(shared["scores"], alone["scores"])
print("ok", len(shared["scores"]), flush=True)
distributed.finish(world)
"""


@pytest.mark.slow
def test_the_glitch_features_scan_shared_by_two_ranks_equals_one_process(tmp_path):
    r = _torchrun(tmp_path, _FEATURES_SCRIPT, str(tmp_path / "shards"), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ok 60" in r.stdout
    assert not (tmp_path / "shards").exists()  # gathered and removed


_FINISH_SCRIPT = r"""
import sys, time, warnings
from interp import distributed

distributed.FINISH_TIMEOUT_S = 3.0
world = distributed.join("cpu")
if sys.argv[1] == "late":  # rank 1 reaches the end 2 s after rank 0
    if world.rank == 1:
        time.sleep(2.0)
    print(f"rank {world.rank} arrives {time.time():.3f}", flush=True)
    distributed.finish(world)
    print(f"rank {world.rank} leaves {time.time():.3f}", flush=True)
else:  # rank 1 never reaches the end: rank 0 warns and leaves instead of waiting for it
    if world.rank == 1:
        time.sleep(8.0)
        sys.exit(0)
    t = time.time()
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        distributed.finish(world)
    print(f"rank 0 left after {time.time() - t:.1f} warned {len(got)}", flush=True)
    sys.stdout.flush()
    import os
    os._exit(0)
"""



@pytest.mark.slow
def test_finish_waits_for_every_rank_before_leaving_the_group(tmp_path):
    """No rank tears the gloo group down while another may still be reading its last message."""
    r = _torchrun(tmp_path, _FINISH_SCRIPT, "late")
    assert r.returncode == 0, r.stderr[-3000:]
    # the two ranks share one stdout, so their lines may interleave
    t = {(rank, what): float(at) for rank, what, at in re.findall(r"rank (\d) (arrives|leaves) (\d+\.\d{3})", r.stdout)}
    assert t[("1", "arrives")] - t[("0", "arrives")] > 1.5
    assert t[("0", "leaves")] >= t[("1", "arrives")]


@pytest.mark.slow
def test_finish_leaves_with_a_warning_when_a_rank_never_arrives(tmp_path):
    """A rank that died (never reaches the end) costs rank 0 the bounded wait and a warning, not a hang."""
    r = _torchrun(tmp_path, _FINISH_SCRIPT, "absent")
    got = re.search(r"rank 0 left after ([\d.]+) warned (\d+)", r.stdout)
    assert got, r.stdout + r.stderr[-2000:]
    waited, warned = float(got.group(1)), int(got.group(2))
    assert 2.5 <= waited < 7.0 and warned == 1, r.stdout + r.stderr[-2000:]


_EXIT_SCRIPT = r"""
import atexit, sys, time
from interp import distributed

rank_seen = {}
atexit.register(lambda: print(f"rank {rank_seen['r']} exits {time.time():.3f}", flush=True))  # runs after join's own
world = distributed.join("cpu")
rank_seen["r"] = world.rank
if world.rank == 0:
    time.sleep(2.0)
    print(f"rank 0 done {time.time():.3f}", flush=True)
elif sys.argv[1] == "fails":
    print(f"rank 1 fails {time.time():.3f}", flush=True)
    raise RuntimeError("this rank fails")
"""


def _times(stdout):
    return {(rank, what): float(at) for rank, what, at in re.findall(r"rank (\d) (done|exits|fails) (\d+\.\d{3})", stdout)}


@pytest.mark.slow
def test_a_script_that_never_calls_finish_still_leaves_after_every_rank(tmp_path):
    """join() leaves the group at exit once every rank is done (without it gloo may abort a rank that
    leaves first); a rank that an exception ends leaves at once, and torchrun reports the failure."""
    r = _torchrun(tmp_path, _EXIT_SCRIPT, "ends")
    assert r.returncode == 0, r.stderr[-3000:]
    t = _times(r.stdout)
    assert t[("1", "exits")] >= t[("0", "done")], r.stdout
    r = _torchrun(tmp_path, _EXIT_SCRIPT, "fails")
    assert r.returncode != 0 and "this rank fails" in r.stderr
    t = _times(r.stdout)
    assert t[("1", "exits")] - t[("1", "fails")] < 1.5, r.stdout


def test_map_chunks_dynamic_schedule_computes_only_unclaimed_chunks(tmp_path, monkeypatch):
    """``schedule="dynamic"``: a rank takes the chunks no other rank has claimed (here rank 1 of 2,
    with chunks 0 and 2 claimed by rank 0), whatever the round-robin deal would give it."""
    import torch

    from interp import distributed
    from interp.errors import InterpError

    monkeypatch.setattr(distributed, "_WORLD", World(rank=1, size=2))
    (tmp_path / "claims").mkdir()
    for k in (0, 2):
        (tmp_path / "claims" / f"{k:05d}").touch()
    calls = []

    def compute(k):
        calls.append(k)
        return {"x": torch.tensor([float(k)])}

    assert distributed.map_chunks(5, compute, tmp_path, {"pass": "t"}, schedule="dynamic") is None
    assert calls == [1, 3, 4], "the static deal would have given rank 1 chunks 1 and 3 only"
    assert sorted(p.name for p in (tmp_path / "claims").iterdir()) == [f"{k:05d}" for k in range(5)]
    calls.clear()
    assert distributed.map_chunks(5, compute, tmp_path, {"pass": "t"}) is None
    assert calls == [], "the static deal: rank 1's chunks 1 and 3 are stored already"
    with pytest.raises(InterpError, match="schedule"):
        distributed.map_chunks(1, compute, tmp_path, {"pass": "t"}, schedule="greedy")
