"""A scan over two torch.distributed ranks (gloo) equals the one-process scan."""

import os
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
