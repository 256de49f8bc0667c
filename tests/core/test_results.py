"""Run folders: tables, figures, summary, manifest, resumable stages."""

import json
import struct

import pandas as pd
import plotly.graph_objects as go
import pytest

from interp.errors import InterpError
from interp.results import Run
from interp.testing import tiny_model


def test_a_value_put_by_the_ranks_is_the_stage_a_rerun_resumes(tmp_path):
    """``Run.put`` (ROME's edits computed by torchrun ranks) stores what ``stage`` would have, under the
    same key: ``stored`` sees it, and a rerun's ``stage`` returns it without computing; another key does not."""
    model = tiny_model("gpt2")
    run = Run(tmp_path, "demo", model=model, params={}, seed=0)
    rows = [{"case_id": 3, "x": 0.25, "s": "a"}]
    assert not run.stored("edit_3", key=[6, 3])
    assert run.put("edit_3", rows, key=[6, 3], seconds=12.5, by="2 ranks") is rows
    assert run.stage_times["edit_3"] == {"seconds": 12.5, "resumed": False, "by": "2 ranks"}
    assert run.stored("edit_3", key=[6, 3]) and not run.stored("edit_3", key=[6, 4]) and not run.stored("edit_4", key=[6, 3])
    run.close()
    again = Run(tmp_path, "demo", model=model, params={}, seed=0)
    assert again.stage("edit_3", lambda: pytest.fail("recomputed"), key=[6, 3]) == rows
    assert again.stage_times["edit_3"] == {"seconds": 12.5, "resumed": True}
    assert again.stage("edit_3", lambda: "new", key=[6, 4]) == "new"
    again.close()
    fresh = Run(tmp_path, "demo", model=model, params={}, seed=0, fresh=True)
    assert not fresh.stored("edit_3", key=[6, 3])  # --fresh: nothing is resumed
    fresh.close()

def test_run_writes_everything_and_resumes(tmp_path):
    model = tiny_model("gpt2")
    calls = []

    def expensive():
        calls.append(1)
        return {"x": [1, 2, 3]}

    run = Run(tmp_path, "demo", model=model, params={"n": 3}, seed=7)
    assert run.stage("s1", expensive) == {"x": [1, 2, 3]}
    run.table("t", pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    run.figure("f", go.Figure(go.Bar(x=["a", "b"], y=[1, 2]), layout_title_text="demo"))
    run.figure("g", go.Figure(go.Bar(x=["a"], y=[1]), layout=dict(width=640, height=360)))
    run.summary(score=0.5)
    run.finish(png=True)
    d = tmp_path / "demo"
    assert (d / "tables/t.csv").is_file() and (d / "tables/t.parquet").is_file()
    html = (d / "figures/f.html").read_text()
    # plotly.js is not embedded: every figure loads the one copy written once in the output folder
    assert len(html) < 100_000 and 'src="../../plotly.min.js"' in html
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000
    assert json.loads((d / "figures/f.json").read_text())["layout"]["title"]["text"] == "demo"
    png = (d / "figures/f.png").read_bytes()
    assert png[:4] == b"\x89PNG"
    # PNG size comes from the figure's layout (default 1000x620), not kaleido's 700x500
    assert struct.unpack(">II", png[16:24]) == (1000, 620)
    assert struct.unpack(">II", (d / "figures/g.png").read_bytes()[16:24]) == (640, 360)
    assert json.loads((d / "summary.json").read_text()) == {"score": 0.5}
    man = json.loads((d / "manifest.json").read_text())
    assert man["seed"] == 7 and man["params"] == {"n": 3} and man["numerics"] == "hf"
    assert man["model"]["weight_hash"].startswith("tensor-sha256:") and man["packages"]["torch"]
    assert man["stages"]["s1"]["resumed"] is False and man["finished"] is True
    cpu = man["host"]["cpu"]  # timings depend on the processor: its name and bf16 instructions are kept
    assert set(cpu) == {"model", "bf16_instructions"} and set(cpu["bf16_instructions"]) <= {"avx512_bf16", "amx_bf16"}

    assert not (d / ".lock").exists()  # released when finished
    again = Run(tmp_path, "demo", model=model, params={"n": 3}, seed=7)
    assert again.stage("s1", expensive) == {"x": [1, 2, 3]} and len(calls) == 1
    assert again.stage_times["s1"]["resumed"] is True
    again.stage("s1", expensive, key="other")  # a different stage key recomputes
    assert len(calls) == 2
    again.close()
    with pytest.raises(InterpError, match=r"other settings \(n 3 -> 4\).*--fresh"):
        Run(tmp_path, "demo", model=model, params={"n": 4}, seed=7)
    changed = Run(tmp_path, "demo", model=model, params={"n": 4}, seed=7, fresh=True)
    changed.stage("s1", expensive)
    assert len(calls) == 3 and not (d / "tables/t.csv").exists()  # --fresh replaced the folder
    changed.close()


def test_table_rejects_non_frames(tmp_path):
    with pytest.raises(InterpError):
        Run(tmp_path, "demo").table("t", [1, 2])


# ------------------------------------------------------------------ folders that cannot mix
import dataclasses
from pathlib import Path
import errno
import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import torch

from interp import store
from interp.results import check_folder


def _leftovers(root):
    return [p for p in root.rglob("*") if store.TMP_MARK in p.name or p.name.endswith(".tmp")]


def test_second_run_into_a_held_folder_is_refused(tmp_path):
    first = Run(tmp_path, "demo", params={"n": 1})
    lock = json.loads((tmp_path / "demo/.lock").read_text())
    assert lock["pid"] == os.getpid() and lock["host"] == socket.gethostname() and lock["started"] and "command" in lock
    with pytest.raises(InterpError, match=f"in use by another run: pid {os.getpid()}"):
        Run(tmp_path, "demo", params={"n": 1})
    with pytest.raises(InterpError, match="in use"):
        check_folder(tmp_path, "demo", "m", "hf", "float32", 0, {"n": 1})
    first.close()
    Run(tmp_path, "demo", params={"n": 1}).close()


def test_lock_of_another_live_process_is_refused(tmp_path):
    (tmp_path / "demo").mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "demo/.lock").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                         "started": "2026-01-01T00:00:00", "command": "interp run demo"}))
        with pytest.raises(InterpError, match=f"pid {sleeper.pid} .*interp run demo"):
            Run(tmp_path, "demo")
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is gone: its lock is stale and taken over, with a note
    run = Run(tmp_path, "demo")
    run.finish(png=False)
    man = json.loads((tmp_path / "demo/manifest.json").read_text())
    assert any(f"stale lock of pid {sleeper.pid}" in n for n in man["notes"])
    assert not (tmp_path / "demo/.lock").exists()


def test_rerun_removes_stale_outputs(tmp_path):
    run = Run(tmp_path, "demo", params={"n": 1})
    run.table("a", pd.DataFrame({"x": [1]}))
    run.table("b", pd.DataFrame({"x": [2]}))
    run.figure("f", go.Figure(go.Bar(x=["a"], y=[1])))
    run.summary(v=1)
    d = run.finish(png=True)
    assert (d / "figures/f.png").is_file()
    # the same settings, without PNGs and without table b: nothing of the first run may remain beside it
    run = Run(tmp_path, "demo", params={"n": 1})
    run.table("a", pd.DataFrame({"x": [3]}))
    run.figure("f", go.Figure(go.Bar(x=["a"], y=[2])))
    run.finish(png=False)
    assert sorted(p.name for p in (d / "tables").iterdir()) == ["a.csv", "a.parquet"]
    assert sorted(p.name for p in (d / "figures").iterdir()) == ["f.html", "f.json"]
    assert not (d / "summary.json").exists()
    man = json.loads((d / "manifest.json").read_text())
    assert man["tables"] == ["a"] and any("earlier run" in n for n in man["notes"])


def test_foreign_folder_is_refused_unless_fresh(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo/notes.txt").write_text("mine")
    with pytest.raises(InterpError, match="not an interp run"):
        Run(tmp_path, "demo")
    assert (tmp_path / "demo/notes.txt").read_text() == "mine"
    Run(tmp_path, "demo", fresh=True).close()
    assert not (tmp_path / "demo/notes.txt").exists()


def test_early_failure_leaves_no_skeleton(tmp_path):
    out = tmp_path / "new" / "out"
    run = Run(out, "demo")
    assert (out / "demo/.lock").is_file()
    run.close(failed=True)
    assert not (tmp_path / "new").exists()
    # once a stage is stored, a failure keeps it (that is what a rerun resumes from)
    run = Run(out, "demo")
    run.stage("s", lambda: 1)
    run.close(failed=True)
    assert (out / "demo/stages/s.json").is_file() and not (out / "demo/.lock").exists()


def test_out_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InterpError, match="is a file"):
        Run(tmp_path / "f", "demo")
    with pytest.raises(InterpError, match="is a file"):
        Run(tmp_path / "f" / "sub", "demo")


def test_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    run = Run(tmp_path, "demo")
    run.table("t", pd.DataFrame({"x": [1]}))
    before = (tmp_path / "demo/tables/t.parquet").read_bytes()

    def full(self, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(OSError):
        run.table("t", pd.DataFrame({"x": [2]}))
    monkeypatch.undo()

    def full_text(self, text, *a, **k):
        with open(self, "w") as f:
            f.write(text[:3])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full_text)
    with pytest.raises(OSError):
        run.stage("s", lambda: torch.ones(2))
    with pytest.raises(OSError):
        run.summary(a=1)
    monkeypatch.undo()
    assert _leftovers(tmp_path) == []
    assert (tmp_path / "demo/tables/t.parquet").read_bytes() == before
    assert not (tmp_path / "demo/stages/s.json").exists()
    run.close(failed=True)


def test_crash_leftovers_are_removed_on_the_next_run(tmp_path):
    Run(tmp_path, "demo").close()
    (tmp_path / "demo/tables/.t.tmp-999.parquet").write_bytes(b"x" * 100)
    Run(tmp_path, "demo").close()
    assert _leftovers(tmp_path) == []


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = None


def test_planted_pickle_never_runs(tmp_path):
    global MARKER
    MARKER = tmp_path / "pwned"
    Run(tmp_path, "demo").close()
    (tmp_path / "demo/stages/activations.pkl").write_bytes(pickle.dumps({"key": "x", "value": _Boom()}))
    run = Run(tmp_path, "demo")
    assert run.stage("activations", lambda: 5) == 5
    assert not MARKER.exists() and not (tmp_path / "demo/stages/activations.pkl").exists()
    run.close()


def test_stage_with_wrong_key_or_tampered_file_is_recomputed(tmp_path):
    run = Run(tmp_path, "demo")
    run.stage("s", lambda: torch.ones(3))
    run.close()
    st = tmp_path / "demo/stages"
    (st / "s.safetensors").write_bytes((st / "s.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    run = Run(tmp_path, "demo")
    assert torch.equal(run.stage("s", lambda: torch.zeros(3)), torch.zeros(3))
    assert run.stage_times["s"]["resumed"] is False
    run.close()
    # a header naming a class outside the package is never instantiated
    head = json.loads((st / "s.json").read_text())
    head["value"] = {"__dataclass__": "subprocess:Popen", "fields": {"args": "touch x"}}
    (st / "s.json").write_text(json.dumps(head))
    assert store.load_stage(st, "s", head["key"]) is None


@dataclasses.dataclass
class _Local:
    x: int


def test_store_round_trip(tmp_path):
    from interp.recall.facts import Fact
    from interp.rome.collapse import ReferenceTexts

    value = {
        "t": torch.arange(6, dtype=torch.float16).reshape(2, 3),
        ("zero", 3): np.array([1.5, float("nan")]),
        "frame": pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, float("nan")]}),
        "lists_in_cells": pd.DataFrame({"ids": [[1, 2], [3]], "name": ["p", "q"]}),
        "series": pd.Series([1.0, 2.0], name="s"),
        "fact": Fact("rel", "Paris", "France", "train", 3),
        "ref": ReferenceTexts([[1, 2]], [[3]], [1]) if len(dataclasses.fields(ReferenceTexts)) == 3 else None,
        "tuple": (1, "a", None, True),
        "set": {1, 2},
        "nan": float("nan"),
        "strs": np.array(["a", "b"]),
    }
    d = tmp_path / "st"
    d.mkdir()
    assert store.save_stage(d, "v", "k1", value, 1.0) == []
    got, head = store.load_stage(d, "v", "k1")
    assert store.load_stage(d, "v", "k2") is None
    assert torch.equal(got["t"], value["t"]) and got["t"].dtype == torch.float16
    np.testing.assert_array_equal(got[("zero", 3)], value[("zero", 3)])
    pd.testing.assert_frame_equal(got["frame"], value["frame"])
    assert got["lists_in_cells"]["ids"].tolist() == [[1, 2], [3]]
    pd.testing.assert_series_equal(got["series"], value["series"])
    assert got["fact"] == value["fact"] and got["tuple"] == value["tuple"] and got["set"] == {1, 2}
    assert got["nan"] != got["nan"] and got["strs"].tolist() == ["a", "b"]
    if value["ref"] is not None:
        assert got["ref"] == value["ref"]
    assert not list(d.glob("*.pkl")) and _leftovers(d) == []


def test_value_that_cannot_be_stored_is_recomputed_not_faked(tmp_path):
    # not an interp class, and None cannot stand in for it: the stage is not stored at all
    with pytest.raises(store.Unstorable, match="_Local"):
        store.save_stage(tmp_path, "v", "k", {"a": _Local(1)}, 1.0)
    assert list(tmp_path.iterdir()) == []
    calls = []
    for _ in range(2):
        run = Run(tmp_path, "demo")
        run.stage("s", lambda: calls.append(1) or [_Local(2)])
        run.finish(png=False)
    assert len(calls) == 2
    man = json.loads((tmp_path / "demo/manifest.json").read_text())
    assert any("stage s: not stored" in n for n in man["notes"])


def test_progress_lines_name_stages(tmp_path, capsys):
    run = Run(tmp_path, "demo")
    run.stage("alpha", lambda: 1)
    run.close()
    run = Run(tmp_path, "demo")
    run.stage("alpha", lambda: 1)
    run.close()
    err = capsys.readouterr().err
    assert "[demo] alpha: computing" in err and "[demo] alpha: done in" in err and "[demo] alpha: resumed" in err
    assert "\r" not in err
