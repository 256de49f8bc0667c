"""Every paper script and benchmark imports cleanly (their bodies run under ``__main__`` only)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted([*ROOT.glob("analyses/*.py"), *ROOT.glob("bench/*.py")])


def test_there_are_scripts():
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_imports_and_documents_itself(path):
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.__doc__ and "python" in mod.__doc__, "the docstring says how to run it"


@pytest.mark.parametrize("path", sorted(ROOT.glob("analyses/*.py")), ids=lambda p: p.name)
def test_script_help_parses(path, monkeypatch, capsys):
    """``--help`` runs the script's command line up to argument parsing (no model is loaded)."""
    import runpy

    monkeypatch.setattr("sys.argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(path), run_name="__main__")
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--model" in out
