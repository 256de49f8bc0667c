"""The report pages: built from synthetic run folders, checked for structure and in a real headless chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from interp.report import (
    argument_heads_overlay,
    claims_matrix,
    glitch_overlay,
    logit_lens_overlay,
    read_run,
    read_runs,
    verdict_counts,
    write_families_page,
    write_model_page,
)
from interp.results import PLOTLYJS, write_figure, write_json

HASH = "tensor-sha256:abc123"


def _png() -> bytes:
    """A valid 1x1 white PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff")) + chunk(b"IEND", b""))


def make_run(model_dir: Path, analysis: str, *, spec: str = "m1", n_layers: int = 4, claims: list[dict] | None = None,
             summary: dict | None = None, tables: dict[str, pd.DataFrame] | None = None, figure: bool = True,
             png_only: str | None = None, weight_hash: str = HASH) -> Path:
    """A run folder as Run writes it: summary, manifest, tables (one claims.csv), a plotly figure (HTML+JSON)."""
    d = model_dir / analysis
    (d / "tables").mkdir(parents=True, exist_ok=True)
    write_json(d / "summary.json", summary or {"score": 0.5})
    figs = []
    if figure:
        fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2], name="demo"), layout_title_text=f"{analysis} demo")
        write_figure(fig, d / "figures", "main", model_dir / PLOTLYJS)
        figs.append("main")
    if png_only:
        (d / "figures").mkdir(exist_ok=True)
        (d / "figures" / f"{png_only}.png").write_bytes(_png())
        figs.append(png_only)
    write_json(d / "manifest.json", {
        "analysis": analysis, "finished": True, "seed": 0, "numerics": "hf",
        "model": {"spec": spec, "family": "llama", "architecture": "LlamaForCausalLM", "weight_hash": weight_hash,
                  "n_layers": n_layers, "n_heads": 2, "d_vocab": 100, "dtype": "float32", "device": "cpu"},
        "params": {"max_facts": 8, "quick": True}, "packages": {"torch": "2.x"}, "command": "interp run " + analysis,
        "stages": {"activations": {"seconds": 12.5, "resumed": False}, "logit_lens": {"seconds": 0.25, "resumed": True}},
        "wall_seconds": 13.0, "figures": figs, "notes": ["a note"],
    })
    if claims is not None:
        pd.DataFrame(claims).to_csv(d / "tables" / "claims.csv", index=False)
    for name, df in (tables or {}).items():
        df.to_csv(d / "tables" / f"{name}.csv", index=False)
    return d


def _logit_lens(n_layers: int) -> pd.DataFrame:
    rows = [{"relation": rel, "shots": s, "layer": l, "answer_prob": (l + 1) / n_layers / (2 if rel == "x" else 1)}
            for rel in ("all", "x") for s in (0, 3) for l in range(n_layers)]
    return pd.DataFrame(rows)


def _arg_heads(n_layers: int) -> pd.DataFrame:
    return pd.DataFrame([{"relation": "all", "shots": s, "layer": l, "head": h, "name": f"{l}.{h}", "score": l + h / 10 + s}
                         for s in (0, 3) for l in range(n_layers) for h in range(2)])


CLAIMS = [
    {"claim": "Argument heads carry the subject", "measured": "0.33", "paper": "large", "verdict": "reproduced", "figure": "main"},
    {"claim": "Final layers suppress the answer", "measured": "peak at last layer", "paper": "drop", "verdict": "not reproduced",
     "figure": ""},
    {"claim": "MLP anti-correlates with frequency", "measured": "+0.2", "paper": "negative", "verdict": "opposite", "figure": ""},
]


@pytest.fixture
def model_dir(tmp_path):
    m = tmp_path / "figs" / "m1"
    make_run(m, "recall", claims=CLAIMS, summary={"n_facts": 24, "frequency_source": "wikipedia"},
             tables={"logit_lens": _logit_lens(4), "argument_heads": _arg_heads(4),
                     "big": pd.DataFrame({"a": range(100)}), "small": pd.DataFrame({"k": ["p", "q"], "v": [0.123456, 2.0]})})
    make_run(m, "glitch", summary={"glitch_prevalence": 0.125, "precision": 1.0, "recall": 0.25, "f1": 0.4,
                                   "text_corpus": "wikipedia"}, png_only="pca_scatter", figure=False)
    return m


# ------------------------------------------------------------------ HTML helpers
class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.scripts_src: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("href", "src"):
            if a.get(k):
                self.refs.append(a[k])
        if tag == "script" and a.get("src"):
            self.scripts_src.append(a["src"])


def _links(page: Path) -> _Links:
    p = _Links()
    p.feed(page.read_text())
    return p


def _local_targets_exist(page: Path) -> list[str]:
    missing = []
    for ref in _links(page).refs:
        if ref.startswith("#"):
            continue
        assert not re.match(r"^[a-z]+://", ref), f"page refers outside itself: {ref}"
        target = (page.parent / ref.split("#")[0])
        if not target.exists():
            missing.append(ref)
    return missing


# ------------------------------------------------------------------ the per-model page
def test_model_page_structure(model_dir):
    page = write_model_page(model_dir)
    html = page.read_text()
    # one shared plotly.js, written beside the page, not embedded in it or in the figures
    assert _links(page).scripts_src == [PLOTLYJS]
    assert (model_dir / PLOTLYJS).stat().st_size > 1_000_000 and len(html) < 500_000
    assert 'src="../../plotly.min.js"' in (model_dir / "recall/figures/main.html").read_text()
    # claims beside measured values, each verdict styled; the figure link goes to the drawn figure
    for c in CLAIMS:
        assert c["claim"] in html and c["measured"] in html
    assert 'class="verdict v-reproduced"' in html and 'class="verdict v-not-reproduced"' in html
    assert 'class="verdict v-opposite"' in html
    assert 'href="#fig-recall-main"' in html and 'id="fig-recall-main"' in html
    # no claims table: said so, with the summary's numbers instead
    glitch = html[html.index('id="glitch"'):]
    assert "no claims table exists" in glitch and "glitch_prevalence" in glitch and "0.125" in glitch
    # rome never ran
    assert re.search(r"ROME collapse[^<]*</td><td colspan=\"3\" class=\"muted\">not run", html)
    # the interactive figure carries its JSON; the PNG-only one is an image
    assert html.count('class="plot"') == 1 and '"recall demo"' in html
    assert 'src="glitch/figures/pca_scatter.png"' in html
    # small tables rendered, large ones linked
    assert "0.1235" in html and 'href="recall/tables/small.csv"' in html
    assert "100 rows × 1 columns" in html and "<td>99</td>" not in html
    # provenance: model, weights, data sources, parameters, stage times
    for text in (HASH, "wikipedia", "max_facts", "activations", "12.5 s", "resumed from a stored stage", "a note"):
        assert text in html
    assert _local_targets_exist(page) == []


def test_claims_counts_and_bad_claims_table(model_dir):
    assert verdict_counts(read_run(model_dir / "recall").claims) == {"reproduced": 1, "not reproduced": 1, "opposite": 1}
    pd.DataFrame({"claim": ["x"], "measured": ["1"]}).to_csv(model_dir / "glitch/tables/claims.csv", index=False)
    run = read_run(model_dir / "glitch")
    assert run.claims is None and "lacks column(s) paper, verdict" in run.claims_problem
    assert "lacks column(s) paper, verdict" in write_model_page(model_dir).read_text()


def test_model_page_flags_mixed_models_and_unfinished_runs(model_dir):
    make_run(model_dir, "rome", spec="other", weight_hash="tensor-sha256:zzz")
    m = json.loads((model_dir / "rome/manifest.json").read_text())
    m["finished"] = False
    write_json(model_dir / "rome/manifest.json", m)
    html = write_model_page(model_dir).read_text()
    assert "mixed models: rome was made with other" in html
    assert "the run did not finish" in html


def test_model_page_ignores_hidden_files_and_says_when_a_run_holds_the_folder(model_dir):
    (model_dir / "recall/.lock").write_text("{}")
    (model_dir / "recall/tables/.t.tmp-1.csv").write_text("a\n1\n")
    (model_dir / "recall/figures/.main.tmp-1.json").write_text("{")
    run = read_run(model_dir / "recall")
    assert [f.name for f in run.figures] == ["main"] and all(not t.name.startswith(".") for t in run.tables)
    html = write_model_page(model_dir).read_text()
    assert "a run holds this folder now" in html and ".tmp-" not in html


def test_model_page_survives_damaged_files(tmp_path):
    d = tmp_path / "m" / "recall"
    (d / "tables").mkdir(parents=True)
    (d / "summary.json").write_text("{not json")
    (d / "tables/claims.csv").write_bytes(b"\xff\xfe\x00garbage")
    html = write_model_page(tmp_path / "m").read_text()
    assert "summary.json unreadable" in html and "no manifest.json" in html


# ------------------------------------------------------------------ the cross-family page
@pytest.fixture
def families(model_dir):
    root = model_dir.parent
    m2 = root / "m2"
    make_run(m2, "recall", spec="m2", n_layers=8, claims=CLAIMS[:2] + [
        {"claim": "Only in m2", "measured": "7", "paper": "5", "verdict": "not measurable", "figure": ""}],
        tables={"logit_lens": _logit_lens(8), "argument_heads": _arg_heads(8)})
    make_run(m2, "rome", spec="m2", tables={"edits": pd.DataFrame({
        "variant": ["rome", "rome", "consistent"], "denominator": [40.0, 3000.0, 9000.0],
        "collapse": [True, False, False], "subject": ["a", "b", "a"]})})
    (root / "notamodel").mkdir()
    return root


def test_claims_matrix_rows_and_missing_cells(families):
    models = {m: read_runs(families / m) for m in ("m1", "m2")}
    rows = claims_matrix(models, "recall")
    assert [r["claim"] for r in rows] == [c["claim"] for c in CLAIMS] + ["Only in m2"]
    assert rows[0]["cells"]["m2"]["verdict"] == "reproduced"
    assert rows[2]["cells"]["m2"] == "not in this run" and rows[3]["cells"]["m1"] == "not in this run"
    assert claims_matrix(models, "rome") == []


def test_overlays_draw_the_tables(families):
    models = {m: read_runs(families / m) for m in ("m1", "m2")}
    fig, missing = logit_lens_overlay(models)
    assert missing == [] and len(fig.data) == 4  # 2 models x 2 shot settings, relation "all" only
    m2_zero = next(t for t in fig.data if t.name == "m2 (0-shot)")
    assert list(m2_zero.x) == pytest.approx([l / 7 for l in range(8)])
    assert list(m2_zero.y) == pytest.approx([(l + 1) / 8 for l in range(8)])
    fig, _ = argument_heads_overlay(models)
    assert len(fig.data[0].y) == 8 and max(fig.data[0].y) == pytest.approx(3.1)  # zero-shot only
    fig, missing = glitch_overlay(models)
    assert missing == ["m2"] and [t.y[0] for t in fig.data] == [0.125, 1.0, 0.25, 0.4]


def test_families_page_structure(families):
    page = write_families_page(families)
    html = page.read_text()
    assert _links(page).scripts_src == [PLOTLYJS] and (families / PLOTLYJS).is_file()
    assert (families / "m1/index.html").is_file() and (families / "m2/index.html").is_file()
    assert 'href="m1/index.html"' in html and "notamodel" not in html
    models = html[html.index('id="models"'):html.index('id="claims-recall"')]
    assert "1 opposite" in models and "1 not measurable" in models  # m1 has the opposite, m2 the unmeasurable
    claims = html[html.index('id="claims-recall"'):html.index('id="claims-glitch"')]
    assert "<th>m1</th><th>m2</th>" in claims and "Only in m2" in claims and "not in this run" in claims
    assert 'href="m1/recall/figures/main.html"' in claims  # the claim's figure
    assert "not run" in html[html.index('id="claims-glitch"'):html.index('id="claims-rome"')]
    assert html.count('class="plot"') == 4  # four overlays: every family has some of each
    assert "not run for m1" in html and "not run for m2" in html
    assert _local_targets_exist(page) == []


def test_families_page_without_results_says_not_run(tmp_path):
    make_run(tmp_path / "only", "glitch", summary={"n": 1}, figure=False)
    html = write_families_page(tmp_path).read_text()
    assert html.count('class="plot"') == 0 and html.count("not run: no model has the") == 4


# ------------------------------------------------------------------ a real browser
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _browse(page: Path, tmp: Path) -> tuple[dict[str, str], list[str]]:
    """Load ``page`` offline in headless chromium; its <html> data attributes and the console lines."""
    out = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={tmp / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    m = re.search(r"<html([^>]*)>", out.stdout)
    assert m, f"chromium printed no DOM (rc {out.returncode}): {out.stderr[-500:]}"
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', m.group(1)))
    console = [l for l in out.stderr.splitlines() if ":CONSOLE" in l]
    return attrs, console


needs_chromium = pytest.mark.skipif(_chromium() is None, reason="no chromium installed (apt-get install chromium)")


@needs_chromium
def test_pages_render_offline_in_chromium(families, tmp_path):
    page = write_families_page(families)
    for p, n in ((page, 4), (families / "m1/index.html", 1), (families / "m2/index.html", 2)):
        attrs, console = _browse(p, tmp_path)
        assert console == [], console
        assert json.loads(attrs["errors"].replace("&quot;", '"')) == []
        assert attrs["figures-expected"] == str(n) and attrs["figures-rendered"] == str(n)


@needs_chromium
def test_browser_check_sees_a_page_that_cannot_draw(model_dir, tmp_path):
    page = write_model_page(model_dir)
    (model_dir / PLOTLYJS).unlink()
    attrs, console = _browse(page, tmp_path)
    assert attrs["figures-rendered"] == "0" and "plotly.js did not load" in " ".join(console)
    assert json.loads(attrs["errors"].replace("&quot;", '"')) != []


def test_long_numbers_in_claims_are_shortened(tmp_path):
    make_run(tmp_path / "m", "recall", claims=[{"claim": "c", "measured": "0.32769612967967987", "paper": "> 0.1",
                                                 "verdict": "reproduced"}])
    html = write_model_page(tmp_path / "m").read_text()
    assert "0.3277" in html and "0.32769612967967987" not in html and "&gt; 0.1" in html


def test_collapse_overlay_prefers_the_normalised_denominator(families):
    from interp.report import collapse_denominator_overlay

    models = {m: read_runs(families / m) for m in ("m1", "m2")}
    fig, missing = collapse_denominator_overlay(models)
    assert missing == ["m1"] and {t.name for t in fig.data} == {"collapse", "no collapse"}
    assert sorted(y for t in fig.data for y in t.y) == [40.0, 3000.0]  # plain ROME rows only
    edits = families / "m2/rome/tables/edits.csv"
    pd.read_csv(edits).assign(denominator_normalized=[0.5, 7.0, 9.0]).to_csv(edits, index=False)
    fig, _ = collapse_denominator_overlay({m: read_runs(families / m) for m in ("m1", "m2")})
    assert sorted(y for t in fig.data for y in t.y) == [0.5, 7.0] and fig.layout.yaxis.title.text == "denominator normalized"


def test_the_cross_family_page_leaves_out_runs_still_in_progress(tmp_path):
    from interp.report import model_folders

    (tmp_path / "done" / "recall").mkdir(parents=True)
    (tmp_path / "done" / "recall" / "summary.json").write_text("{}")
    (tmp_path / "running" / "recall").mkdir(parents=True)
    (tmp_path / "running" / "recall" / "manifest.json").write_text('{"finished": false}')
    assert [p.name for p in model_folders(tmp_path)] == ["done"]
