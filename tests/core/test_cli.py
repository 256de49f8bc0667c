"""The command line: one-line errors, help on every command, the model list."""

import subprocess
import sys

import pytest

from interp.cli import main


def test_unknown_model_is_one_line(capsys):
    assert main(["run", "recall", "--model", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: unknown model 'nope'") and "Traceback" not in "".join(err)


def test_missing_file(capsys, tmp_path):
    assert main(["run", "rome", "--model", str(tmp_path / "m.gguf")]) == 2
    assert "no such GGUF file" in capsys.readouterr().err


def test_bad_set(capsys):
    assert main(["run", "glitch", "--set", "oops"]) == 2
    assert "key=value" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [[], ["models"], ["run"], ["reproduce"], ["report"], ["ablate-final-heads"]])
def test_help_fits_one_screen(cmd):
    out = subprocess.run([sys.executable, "-m", "interp.cli", *cmd, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: interp" in out.stdout
    assert len(out.stdout.splitlines()) <= 45


def test_models_lists_embedded_as_cached(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("smollm2-135m"))
    assert "llama" in line and "yes" in line


def test_report_rebuilds_pages_without_a_model(tmp_path, capsys):
    (tmp_path / "m/recall/figures").mkdir(parents=True)
    (tmp_path / "m/recall/summary.json").write_text('{"n_facts": 3}')
    (tmp_path / "m/recall/figures/a.html").write_text("x")
    (tmp_path / "m/recall/figures/a.png").write_bytes(b"x")
    assert main(["report", "--out", str(tmp_path / "m")]) == 0
    page = (tmp_path / "m/index.html").read_text()
    assert 'href="recall/figures/a.html"' in page and 'src="recall/figures/a.png"' in page
    assert main(["report", "--families", str(tmp_path)]) == 0
    assert 'href="m/index.html"' in (tmp_path / "index.html").read_text()
    assert (tmp_path / "plotly.min.js").is_file() and (tmp_path / "m/plotly.min.js").is_file()


@pytest.mark.parametrize("args", [["report"], ["report", "--out", "."], ["report", "--families", "."]])
def test_report_without_runs_is_one_line(args, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert not (tmp_path / "index.html").exists()


def test_python_run_matches_the_run_folder(tmp_path):
    import json

    import interp
    from interp.testing import tiny_model

    model = tiny_model("gpt2")
    summary = interp.run("rome", model, out=tmp_path, quick=True, png=False, n_requests=2, v_steps=2)
    folder = tmp_path / "rome"
    assert summary == json.loads((folder / "summary.json").read_text())
    assert summary["n_requests"] == 2
    man = json.loads((folder / "manifest.json").read_text())
    assert man["params"]["n_requests"] == 2 and man["params"]["quick"] is True
    # the manifest records what the run used: quick sizes where nothing was set, the caller's values elsewhere
    from interp.rome.pipeline import DEFAULTS, QUICK

    assert man["params"]["v_contexts"] == QUICK["v_contexts"] != DEFAULTS["v_contexts"]
    assert man["params"]["v_steps"] == 2
    with pytest.raises(interp.InterpError, match="no parameter"):
        interp.run("rome", model, out=tmp_path, bogus=1)


def test_reproduce_writes_the_report_page(tmp_path, monkeypatch, capsys):
    import plotly.graph_objects as go

    import interp.analyses
    import interp.cli
    from interp.results import Run

    def fake_run(name, model, out, *a, **k):
        run = Run(out, name, params={"p": 1})
        run.figure("f", go.Figure(go.Bar(x=["a"], y=[1])))
        run.summary(value=0.25)
        return run.finish(png=False)

    monkeypatch.setattr(interp.cli, "_load", lambda args: None)
    monkeypatch.setattr(interp.analyses, "run_analysis", fake_run)
    assert main(["reproduce", "--only", "recall", "rome", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "index.html").read_text()
    assert 'id="recall"' in page and 'id="rome"' in page and "no claims table exists" in page
    assert page.count('class="plot"') == 2 and '<script src="plotly.min.js">' in page
    assert str(tmp_path / "index.html") in capsys.readouterr().out
