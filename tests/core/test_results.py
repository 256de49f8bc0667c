"""Run folders: tables, figures, summary, manifest, resumable stages."""

import json
import struct

import pandas as pd
import plotly.graph_objects as go
import pytest

from interp.errors import InterpError
from interp.results import Run
from interp.testing import tiny_model


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

    again = Run(tmp_path, "demo", model=model, params={"n": 3}, seed=7)
    assert again.stage("s1", expensive) == {"x": [1, 2, 3]} and len(calls) == 1
    assert again.stage_times["s1"]["resumed"] is True
    changed = Run(tmp_path, "demo", model=model, params={"n": 4}, seed=7)
    changed.stage("s1", expensive)
    assert len(calls) == 2


def test_table_rejects_non_frames(tmp_path):
    with pytest.raises(InterpError):
        Run(tmp_path, "demo").table("t", [1, 2])
