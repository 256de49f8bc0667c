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
    summary = interp.run("rome", model, out=tmp_path, quick=True, png=False, n_requests=2, country_requests=0, v_steps=2)
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


# ------------------------------------------------------------------ bad input: one line, before the model loads
import errno
import json
import os
from pathlib import Path

import torch

import interp.cli as cli
from interp.analyses import ANALYSES, declared


@pytest.fixture
def no_load(monkeypatch):
    """Fail the test if the CLI gets as far as loading a model."""

    def load(args):
        raise AssertionError("the model was loaded before the bad input was found")

    monkeypatch.setattr(cli, "_load", load)


def _one_error(capsys, *names):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [l for l in err if l.startswith("error")]
    assert len(errors) == 1 and err[-1] == errors[0] and errors[0].startswith("error: "), err
    for n in names:
        assert n in errors[0], errors[0]
    assert "Traceback" not in "\n".join(err)
    return errors[0]


BAD = [
    ("recall", "max_facts=0", "max_facts"), ("recall", "max_facts=-1", "max_facts"), ("recall", "max_facts=1", "max_facts"),
    ("recall", "ppl_texts=0", "ppl_texts"), ("recall", "independent_facts=-1", "independent_facts"),
    ("recall", "n_random=-1", "n_random"), ("recall", "max_suppressor_heads=-1", "max_suppressor_heads"),
    ("recall", "batch_size=abc", "batch_size"), ("recall", "mitigation_scale=abc", "mitigation_scale"),
    ("recall", "shots=0", "shots"), ("recall", "shots=9", "shots"), ("recall", "templates=12", "templates"),
    ("recall", "templates=[0,\"a\"]", "templates"), ("recall", "relations=nope", "relations"),
    ("recall", "analyse=most", "analyse"), ("recall", "facts_file=/no/such.json", "facts_file"),
    ("rome", "n_requests=-1", "n_requests"), ("rome", "v_contexts=500", "v_contexts"), ("rome", "collapse_ratio=1", "collapse_ratio"),
    ("rome", "prefix_lengths=[[5]]", "prefix_lengths"), ("rome", "cov_cache=maybe", "cov_cache"),
    ("glitch", "quick_vocab=0", "quick_vocab"), ("glitch", "sample_ratio=1.5", "sample_ratio"), ("glitch", "kinds=attn", "kinds"),
    ("glitch", "oracle_prompts=paper", "oracle_prompts"), ("glitch", "sweep_ratios=0,2", "sweep_ratios"),
    ("recall", "bogus=1", "bogus"),
    # corpora, sources and folders are checked before the model loads, not when a late stage reads them
    ("recall", "frequency_source=/no/such.txt", "frequency_source"), ("recall", "text_corpus=wikipedai", "text_corpus"),
    ("rome", "cov_corpus=/no/such", "cov_corpus"), ("rome", "cov_corpus=hf:", "cov_corpus"),
    ("rome", "text_corpus=/no/such", "text_corpus"), ("glitch", "ground_truth_dir=/no/such", "ground_truth_dir"),
]


@pytest.mark.parametrize("analysis,setting,name", BAD)
def test_bad_parameter_is_one_line_before_loading(analysis, setting, name, capsys, tmp_path, no_load):
    out = tmp_path / "out"
    assert cli.main(["run", analysis, "--quick", "--out", str(out), "--set", setting]) == 2
    line = _one_error(capsys, name)
    assert "allowed" in line or "no parameter" in line
    assert not out.exists()  # nothing written, not even an empty folder


@pytest.mark.parametrize("argv,words", [
    (["--seed", "-1"], ["--seed", "0.."]),
    (["--seed", "abc"], ["--seed"]),
    (["--dtype", "int8"], ["--dtype int8", "float32"]),
    (["--device", "nonsense"], ["--device nonsense"]),
    (["--numerics", "xx"], ["--numerics"]),
])
def test_bad_option_is_one_line_before_loading(argv, words, capsys, tmp_path, no_load):
    out = tmp_path / "out"
    assert cli.main(["run", "recall", "--out", str(out), *argv]) == 2
    _one_error(capsys, *words)
    assert not out.exists()


@pytest.mark.parametrize("argv,words", [
    (["--frequency-source", "/no/such.txt"], ["--frequency-source", "wordfreq"]),
    (["--heads", "29-1"], ["29-1", "LAYER.HEAD"]),
    (["--heads", ","], ["no heads"]),
])
def test_ablate_final_heads_bad_option_before_loading(argv, words, capsys, no_load):
    assert cli.main(["ablate-final-heads", *argv]) == 2
    _one_error(capsys, *words)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda(capsys, tmp_path, no_load):
    assert cli.main(["run", "rome", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    _one_error(capsys, "--device cuda", "CUDA is not available")


def test_out_that_is_a_file_or_read_only(capsys, tmp_path, no_load, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    for out in (f, f / "sub"):
        assert cli.main(["run", "rome", "--out", str(out)]) == 2
        _one_error(capsys, "is a file")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: make the folder look read-only
        real = os.access
        monkeypatch.setattr(cli.os, "access", lambda p, m: False if Path(p) == ro else real(p, m))
    try:
        assert cli.main(["run", "rome", "--out", str(ro / "o")]) == 2
        _one_error(capsys, "not writable")
    finally:
        ro.chmod(0o700)
    assert list(ro.iterdir()) == []


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    import importlib.metadata

    assert capsys.readouterr().out.strip() == f"interp {importlib.metadata.version('interp')}"


@pytest.mark.parametrize("analysis", list(ANALYSES))
def test_run_help_lists_every_parameter(analysis):
    out = subprocess.run([sys.executable, "-m", "interp.cli", "run", analysis, "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    for p in declared(analysis):
        row = next((l for l in lines if l.split()[:1] == [p.name]), None)
        assert row is not None, p.name
        assert p.default_text(p.default) in row and p.kind in row  # name, type, default
        assert p.help.split()[0] in row  # meaning


# ------------------------------------------------------------------ whole runs on a tiny model
ROME_SMALL = ["--set", "n_requests=2", "--set", "v_steps=2", "--set", "cov_tokens=256", "--set", "country_requests=0", "--set", "ppl_generic=2",
              "--set", "ppl_generations=2", "--set", "first_token_texts=2"]


@pytest.fixture
def tiny_load(monkeypatch):
    from interp.testing import tiny_model

    model = tiny_model("gpt2")
    monkeypatch.setattr(cli, "_load", lambda args: model)
    return model


def test_model_dependent_bound_is_one_line(capsys, tmp_path, tiny_load):
    out = tmp_path / "out"
    assert cli.main(["run", "recall", "--quick", "--out", str(out), "--set", "top_k_heads=1000"]) == 2
    _one_error(capsys, "top_k_heads=1000", "at most")
    assert not out.exists()
    assert cli.main(["run", "rome", "--quick", "--out", str(out), "--set", "layer=3"]) == 2
    _one_error(capsys, "layer=3", "at most 2")
    assert not out.exists()


def test_rerun_resumes_refuses_other_settings_and_fresh_replaces(capsys, tmp_path, tiny_load):
    out = tmp_path / "out"
    base = ["run", "rome", "--quick", "--no-png", "--out", str(out), "--model", "tiny-gpt2", *ROME_SMALL]
    assert cli.main(base) == 0
    err = capsys.readouterr().err
    assert "[rome] keys: computing" in err and "\r" not in err
    folder = out / "rome"
    assert not (folder / ".lock").exists() and not list(folder.rglob("*.pkl"))
    assert cli.main(base) == 0
    assert "[rome] keys: resumed" in capsys.readouterr().err
    # other parameters into the same folder: refused, the folder untouched
    before = (folder / "summary.json").read_text()
    assert cli.main([*base, "--set", "collapse_ratio=3"]) == 2
    _one_error(capsys, str(folder), "collapse_ratio 2.0 -> 3", "--fresh")
    assert (folder / "summary.json").read_text() == before
    assert cli.main([*base, "--seed", "1"]) == 2
    _one_error(capsys, "seed 0 -> 1")
    # --fresh replaces it
    assert cli.main([*base, "--set", "collapse_ratio=3", "--fresh"]) == 0
    man = json.loads((folder / "manifest.json").read_text())
    assert man["params"]["collapse_ratio"] == 3.0 and man["finished"] is True
    assert json.loads((folder / "summary.json").read_text())["collapse_threshold_ppl_ratio"] == 3.0


def test_held_folder_is_refused_before_loading(capsys, tmp_path, no_load):
    import socket

    folder = tmp_path / "out" / "rome"
    folder.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                  "started": "2026-01-01T00:00:00", "command": "interp run rome"}))
        assert cli.main(["run", "rome", "--out", str(tmp_path / "out")]) == 2
        _one_error(capsys, "in use by another run", f"pid {sleeper.pid}")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_full_disk_is_one_line_and_leaves_nothing_half_written(capsys, tmp_path, tiny_load, monkeypatch):
    import pandas as pd

    def full(self, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"x" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    out = tmp_path / "out"
    assert cli.main(["run", "rome", "--quick", "--no-png", "--out", str(out), *ROME_SMALL]) == 2
    _one_error(capsys, "no space left on device")
    leftovers = [p for p in out.rglob("*") if ".tmp" in p.name or p.name == ".lock"]
    assert leftovers == []


def test_model_that_fails_to_load_leaves_no_folder(capsys, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["run", "recall", "--model", "nope", "--out", str(out)]) == 2
    _one_error(capsys, "unknown model 'nope'")
    assert cli.main(["run", "rome", "--model", str(tmp_path / "m.gguf"), "--out", str(out)]) == 2
    _one_error(capsys, "no such GGUF file")
    assert not out.exists()
