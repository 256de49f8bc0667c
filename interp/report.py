"""The report pages: what a researcher reads first, built only from finished run folders.

Two pages, one style, both offline (one shared ``plotly.min.js`` beside each page, no CDN, no fetch)::

    OUT/index.html        one model: per analysis the paper's claims beside the measured values
                          (``tables/claims.csv``), the figures drawn interactively from their JSON,
                          small tables rendered, provenance, links to every raw file
    ROOT/index.html       every model under ROOT (``ROOT/<model>/<analysis>/``): one row per claim and
                          one column per model, plus overlay figures where families compare

A run folder is ``OUT/ANALYSIS/`` as :class:`interp.results.Run` writes it. The pages read its files
and draw what the tables hold; nothing here computes a statistic (data flows one way: runs -> pages).

Each page reports whether it drew: ``<html data-figures-expected=N data-figures-rendered=M
data-errors=[...]>`` is set by its own script, so a headless browser can check it.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from interp.results import write_plotlyjs
from interp.store import atomic_write

ANALYSIS_ORDER = ("recall", "glitch", "rome")
ANALYSIS_TITLES = {
    "recall": "Factual recall (Lv et al. 2024)",
    "glitch": "Glitch tokens (GlitchProber)",
    "rome": "ROME collapse (Yang et al. 2024)",
}
VERDICTS = ("reproduced", "not reproduced", "opposite", "not measurable")
CLAIMS_COLUMNS = ("claim", "measured", "paper", "verdict")
SMALL_TABLE_ROWS = 25
SMALL_TABLE_COLS = 14
MAX_INLINE_FIGURE_BYTES = 4_000_000
DATA_SOURCE_KEYS = ("frequency_source", "text_corpus", "cov_corpus", "requests_id", "facts_source", "oracle_mode")


# ------------------------------------------------------------------ reading run folders
@dataclass
class FigureFiles:
    """The files of one figure: any of HTML, JSON, PNG may be missing."""

    name: str
    html: Optional[Path] = None
    json: Optional[Path] = None
    png: Optional[Path] = None


@dataclass
class RunFolder:
    """What one finished (or unfinished) run folder holds, read without trusting it to be complete."""

    analysis: str
    dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    claims: Optional[pd.DataFrame] = None
    claims_problem: Optional[str] = None
    tables: list[Path] = field(default_factory=list)
    figures: list[FigureFiles] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def table(self, name: str) -> Optional[pd.DataFrame]:
        """``tables/NAME.csv`` as a DataFrame, or None when absent or unreadable."""
        path = self.dir / "tables" / f"{name}.csv"
        if not path.is_file():
            return None
        try:
            return pd.read_csv(path)
        except Exception:  # noqa: BLE001 - a damaged table is reported as missing
            return None

    @property
    def model(self) -> dict[str, Any]:
        m = self.manifest.get("model")
        return m if isinstance(m, dict) else {}


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append(f"no {path.name}")
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        problems.append(f"{path.name} unreadable ({type(e).__name__})")
        return {}
    if not isinstance(obj, dict):
        problems.append(f"{path.name} is not a JSON object")
        return {}
    return obj


def is_run_folder(path: Path) -> bool:
    """True when ``path`` looks like an analysis run folder (it has a summary or a manifest)."""
    return path.is_dir() and ((path / "summary.json").is_file() or (path / "manifest.json").is_file())


def read_run(folder: str | Path) -> RunFolder:
    """Read one run folder: summary, manifest, claims table, the list of tables and figures.

    Args:
        folder: ``OUT/ANALYSIS``.

    Returns:
        The :class:`RunFolder`; what is missing or unreadable is listed in ``problems``.
    """
    d = Path(folder)
    run = RunFolder(analysis=d.name, dir=d)
    run.summary = _read_json(d / "summary.json", run.problems)
    run.manifest = _read_json(d / "manifest.json", run.problems)
    if run.manifest and run.manifest.get("finished") is False:
        run.problems.append("the run did not finish (manifest says finished: false)")
    if (d / ".lock").is_file():
        run.problems.append("a run holds this folder now (.lock): its files may change while you read them")
    run.tables = sorted(p for p in (d / "tables").glob("*.csv") if not p.name.startswith(".")) if (d / "tables").is_dir() else []
    claims = d / "tables" / "claims.csv"
    if claims.is_file():
        try:
            df = pd.read_csv(claims, dtype=str, keep_default_na=False)
            missing = [c for c in CLAIMS_COLUMNS if c not in df.columns]
            if missing:
                run.claims_problem = f"claims.csv lacks column(s) {', '.join(missing)}"
            else:
                run.claims = df
        except Exception as e:  # noqa: BLE001
            run.claims_problem = f"claims.csv unreadable ({type(e).__name__})"
    figs: dict[str, FigureFiles] = {}
    fdir = d / "figures"
    if fdir.is_dir():
        for p in sorted(fdir.iterdir()):
            if p.suffix in (".html", ".json", ".png") and p.is_file() and not p.name.startswith("."):
                f = figs.setdefault(p.stem, FigureFiles(p.stem))
                setattr(f, p.suffix[1:], p)
    order = [n for n in run.manifest.get("figures", []) if isinstance(n, str)]
    run.figures = [figs[n] for n in order if n in figs] + [f for n, f in figs.items() if n not in order]
    return run


def read_runs(out: str | Path) -> dict[str, RunFolder]:
    """Every run folder directly under ``out``, known analyses first (recall, glitch, rome)."""
    out = Path(out)
    names = [p.name for p in sorted(out.iterdir()) if is_run_folder(p)] if out.is_dir() else []
    names = [n for n in ANALYSIS_ORDER if n in names] + [n for n in names if n not in ANALYSIS_ORDER]
    return {n: read_run(out / n) for n in names}


def model_folders(root: str | Path) -> list[Path]:
    """Sub-folders of ``root`` that hold at least one finished run (one with its ``summary.json``; a run
    still in progress, or stopped, is left out of the cross-family page)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [p for p in sorted(root.iterdir())
            if p.is_dir() and any(q.is_dir() and (q / "summary.json").is_file() for q in p.iterdir())]


# ------------------------------------------------------------------ formatting
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(x: Any) -> str:
    """A value as a short string: 4 significant digits for floats, compact JSON for lists and dicts."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if math.isnan(x):
            return "—"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.3e}"
        return f"{x:.4g}"
    if isinstance(x, (list, tuple, dict)):
        s = json.dumps(x, separators=(", ", ": "))
        return s if len(s) <= 160 else s[:157] + "…"
    return str(x)


def fmt_cell(text: Any) -> str:
    """A claims-table cell: numbers written with many digits shortened to 4 significant, text as it is."""
    t = str(text).strip()
    try:
        x = float(t)
    except ValueError:
        return t
    return fmt(x) if len(t) > 7 and math.isfinite(x) else t


def _seconds(s: Any) -> str:
    try:
        s = float(s)
    except (TypeError, ValueError):
        return "—"
    return f"{s:.1f} s" if s < 120 else f"{int(s // 60)} min {int(round(s % 60))} s"


def verdict_class(verdict: str) -> str:
    """CSS class of a verdict (``v-reproduced``, ``v-not-reproduced``, ``v-opposite``, ``v-not-measurable``)."""
    v = " ".join(str(verdict).strip().lower().replace("_", " ").split())
    return "v-" + v.replace(" ", "-") if v in VERDICTS else "v-other"


def _badge(verdict: str, text: Optional[str] = None) -> str:
    return f'<span class="verdict {verdict_class(verdict)}">{_e(text if text is not None else (verdict or "—"))}</span>'


def _rel(path: Path, base: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def _size(path: Path) -> str:
    n = path.stat().st_size
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _kv_table(items: Sequence[tuple[str, Any]], cls: str = "kv") -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f'<table class="{cls}">{rows}</table>'


def _kv_grid(items: Sequence[tuple[str, Any]], per_column: int = 12) -> str:
    """Key/value pairs in as many side-by-side columns as the page width allows."""
    items = list(items)
    n = max(1, math.ceil(len(items) / per_column))
    size = math.ceil(len(items) / n) if items else 1
    return '<div class="kvgrid">' + "".join(_kv_table(items[i:i + size]) for i in range(0, len(items), size)) + "</div>"


def _df_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, classes="data", na_rep="—",
                      float_format=lambda x: fmt(float(x)), escape=True)


# ------------------------------------------------------------------ page shell
CSS = """
:root{--fg:#1d2430;--muted:#5d6878;--line:#dde2ea;--bg:#f6f7f9;--card:#fff;--accent:#2b5fad;
--ok:#17753a;--okbg:#e3f4e8;--no:#8a5a00;--nobg:#fdf1d8;--opp:#a32020;--oppbg:#fbe3e3;--na:#55606e;--nabg:#eceff3}
*{box-sizing:border-box}
html{background:var(--bg)}
body{margin:0;font:15px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg)}
header.top{background:#1f2a3c;color:#fff;padding:18px 0 14px}
header.top h1{margin:0;font-size:24px;font-weight:600}
header.top .sub{color:#c5cee0;font-size:14px;margin-top:4px}
header.top a{color:#cfe0ff}
.wrap{max-width:1240px;margin:0 auto;padding:0 24px}
nav.toc{position:sticky;top:0;z-index:10;background:#fff;border-bottom:1px solid var(--line)}
nav.toc .wrap{display:flex;gap:6px;flex-wrap:wrap;padding-top:8px;padding-bottom:8px}
nav.toc a{padding:3px 10px;border-radius:14px;background:var(--nabg);color:var(--fg);text-decoration:none;font-size:13.5px}
nav.toc a:hover{background:#dfe6f1}
section.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:18px 22px;margin:20px 0}
h2{margin:0 0 8px;font-size:21px}
h3{margin:22px 0 8px;font-size:16.5px;color:#2a3344}
a{color:var(--accent)}
p.note{color:var(--muted);margin:6px 0}
.warn{background:var(--nobg);border-left:4px solid #e0a400;padding:6px 10px;margin:8px 0;border-radius:4px}
table{border-collapse:collapse;font-size:13.5px}
table.data,table.claims,table.matrix{width:100%;margin:6px 0 10px}
table.claims.narrow{width:auto;min-width:420px}
h4{margin:16px 0 6px;font-size:14.5px;color:#2a3344}
table.data th,table.data td,table.claims th,table.claims td,table.matrix th,table.matrix td{
border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
table.data thead th,table.claims thead th,table.matrix thead th{background:#eef1f6;font-weight:600;position:sticky;top:44px}
table.data tbody tr:nth-child(even){background:#fafbfc}
table.data td{font-variant-numeric:tabular-nums}
table.claims td.num,table.matrix td.num{font-variant-numeric:tabular-nums;min-width:110px}
table.claims td:first-child{min-width:260px}
table.kv th{text-align:left;font-weight:500;color:var(--muted);padding:2px 14px 2px 0;vertical-align:top;white-space:nowrap}
table.kv td{padding:2px 0;word-break:break-word;font-variant-numeric:tabular-nums}
.kvgrid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:0 28px}
.verdict{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12.5px;font-weight:600;white-space:nowrap}
.v-reproduced{background:var(--okbg);color:var(--ok)}
.v-not-reproduced{background:var(--nobg);color:var(--no)}
.v-opposite{background:var(--oppbg);color:var(--opp)}
.v-not-measurable,.v-other{background:var(--nabg);color:var(--na)}
.counts .verdict{margin-right:4px}
.fig{border:1px solid var(--line);border-radius:6px;margin:12px 0;padding:6px 8px 4px}
.fig .plot{width:100%;min-height:200px}
.fig img{max-width:100%;height:auto;display:block;margin:0 auto}
.fig .cap{font-size:13px;color:var(--muted);display:flex;justify-content:space-between;gap:12px;flex-wrap:wrap}
.fig .cap b{color:var(--fg)}
details{margin:6px 0}
details>summary{cursor:pointer;color:#2a3344;font-weight:500}
details>summary:hover{color:var(--accent)}
ul.files{columns:3 280px;font-size:13px;padding-left:18px;margin:4px 0}
code,pre{font-family:"SFMono-Regular",Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f3f5f8;padding:8px 10px;border-radius:4px;white-space:pre-wrap;word-break:break-word}
.muted{color:var(--muted)}
.cell-link{font-size:12.5px}
footer{color:var(--muted);font-size:12.5px;padding:10px 0 30px}
"""

_BOOT = """
(function(){var E=[];var R=document.documentElement;
function rec(m){E.push(String(m).slice(0,300));R.dataset.errors=JSON.stringify(E);}
window.addEventListener('error',function(e){rec(e.message||('failed to load '+((e.target&&(e.target.src||e.target.href))||'resource')));},true);
window.addEventListener('unhandledrejection',function(e){rec(e.reason&&e.reason.message||e.reason);});
var ce=console.error;console.error=function(){rec(Array.prototype.join.call(arguments,' '));ce.apply(console,arguments);};
R.dataset.errors='[]';R.dataset.figuresRendered='0';})();
"""

_DRAW = """
(function(){var R=document.documentElement;var n=0;
var divs=document.querySelectorAll('div.plot[data-fig]');R.dataset.figuresExpected=String(divs.length);
if(typeof Plotly==='undefined'){if(divs.length){throw new Error('plotly.js did not load ('+%s+')');}return;}
divs.forEach(function(div){
  var spec=JSON.parse(document.getElementById(div.dataset.fig).textContent);
  var layout=spec.layout||{};var h=layout.height||520;delete layout.width;layout.autosize=true;layout.height=h;
  Plotly.newPlot(div,spec.data||[],layout,{responsive:true,displaylogo:false}).then(function(){
    if(div.querySelector('.main-svg')){n+=1;R.dataset.figuresRendered=String(n);}
  }).catch(function(err){throw err;});
});})();
"""


def _page(title: str, header: str, nav: Sequence[tuple[str, str]], body: str, plotlyjs_src: Optional[str]) -> str:
    navhtml = "".join(f'<a href="#{_e(a)}">{_e(t)}</a>' for a, t in nav)
    lib = f'<script src="{_e(plotlyjs_src)}"></script>' if plotlyjs_src else ""
    draw = _DRAW % json.dumps(plotlyjs_src or "no bundle")
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{CSS}</style><script>{_BOOT}</script>{lib}</head>\n<body>"
        f"<header class=\"top\"><div class=\"wrap\">{header}</div></header>"
        f"<nav class=\"toc\"><div class=\"wrap\">{navhtml}</div></nav>"
        f"<main class=\"wrap\">{body}</main>"
        "<footer class=\"wrap\">Built by <code>interp report</code> from the run folders' files "
        "(summary.json, manifest.json, tables/, figures/); it computes nothing of its own.</footer>"
        f"<script>{draw}</script></body></html>\n"
    )


def _figure_block(fig: FigureFiles, page_dir: Path, anchor: str, title: Optional[str] = None) -> tuple[str, int]:
    """HTML for one figure: interactive from its JSON when small enough, else its PNG; plus links."""
    links = " · ".join(f'<a href="{_e(_rel(p, page_dir))}">{k}</a>'
                       for k, p in (("HTML", fig.html), ("PNG", fig.png), ("JSON", fig.json)) if p is not None)
    cap = f'<div class="cap"><span><b>{_e(title or fig.name)}</b></span><span>{links}</span></div>'
    if fig.json is not None and fig.json.stat().st_size <= MAX_INLINE_FIGURE_BYTES:
        try:
            spec = json.loads(fig.json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            spec = None
        if isinstance(spec, dict):
            return _inline_plot(spec, anchor, cap), 1
    if fig.png is not None:
        return f'<div class="fig">{cap}<img loading="lazy" src="{_e(_rel(fig.png, page_dir))}" alt="{_e(fig.name)}"></div>', 0
    return f'<div class="fig">{cap}<p class="note">no JSON or PNG for this figure; open its HTML.</p></div>', 0


def _inline_plot(spec: dict[str, Any], anchor: str, cap: str = "") -> str:
    data = json.dumps(spec, separators=(",", ":")).replace("<", "\\u003c")
    return (f'<div class="fig">{cap}<div class="plot" id="{_e(anchor)}" data-fig="{_e(anchor)}-data"></div>'
            f'<script type="application/json" id="{_e(anchor)}-data">{data}</script></div>')


# ------------------------------------------------------------------ the per-model page
def _claims_html(run: RunFolder, page_dir: Path) -> str:
    df = run.claims
    assert df is not None
    rows = []
    for _, r in df.iterrows():
        link = ""
        figname = str(r.get("figure", "") or "")
        f = next((f for f in run.figures if f.name == figname), None)
        if f is not None:
            link = f' <a class="cell-link" href="#fig-{_e(run.analysis)}-{_e(f.name)}">figure</a>'
        rows.append(f"<tr><td>{_e(r['claim'])}{link}</td><td class=\"num\">{_e(fmt_cell(r['measured']))}</td>"
                    f"<td class=\"num\">{_e(fmt_cell(r['paper']))}</td><td>{_badge(r['verdict'])}</td></tr>")
    head = "<thead><tr><th>claim</th><th>measured here</th><th>paper</th><th>verdict</th></tr></thead>"
    return f'<table class="claims">{head}<tbody>{"".join(rows)}</tbody></table>'


def verdict_counts(claims: Optional[pd.DataFrame]) -> dict[str, int]:
    """How many claims carry each verdict (known verdicts first)."""
    if claims is None:
        return {}
    vs = [" ".join(str(v).strip().lower().split()) for v in claims["verdict"]]
    out = {v: vs.count(v) for v in VERDICTS if v in vs}
    for v in vs:
        if v not in out:
            out[v] = vs.count(v)
    return out


def _counts_html(claims: Optional[pd.DataFrame]) -> str:
    c = verdict_counts(claims)
    if not c:
        return '<span class="muted">no claims table</span>'
    return '<span class="counts">' + "".join(_badge(v, f"{n} {v}") for v, n in c.items()) + "</span>"


def _summary_items(summary: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, _e(fmt(v))) for k, v in summary.items()]


def data_sources(run: RunFolder) -> dict[str, Any]:
    """The data each result used: the summary's ``*_source``, ``*_corpus`` and id keys."""
    keys = [k for k in run.summary if k in DATA_SOURCE_KEYS or k.endswith(("_source", "_corpus"))]
    return {k: run.summary[k] for k in keys}


def _provenance_html(run: RunFolder) -> str:
    m = run.manifest
    model = run.model
    parts = []
    srcs = data_sources(run)
    items: list[tuple[str, str]] = []
    items += [("model", _e(model.get("spec", "—"))), ("family", _e(model.get("family", "—"))),
              ("architecture", _e(model.get("architecture", "—"))),
              ("weights hash", f"<code>{_e(model.get('weight_hash', '—'))}</code>"),
              ("numerics", _e(m.get("numerics", model.get("numerics", "—")))),
              ("dtype / device", _e(f"{model.get('dtype', '—')} / {model.get('device', '—')}")),
              ("seed", _e(m.get("seed", "—"))), ("started", _e(m.get("started", "—"))),
              ("finished", _e(fmt(m.get("finished")))), ("wall time", _e(_seconds(m.get("wall_seconds"))))]
    items += [(k, _e(fmt(v))) for k, v in srcs.items()]
    parts.append(_kv_table(items))
    if m.get("command"):
        parts.append(f"<p class=\"note\">command: <code>{_e(m['command'])}</code></p>")
    params = m.get("params")
    if isinstance(params, dict) and params:
        parts.append("<h4>parameters</h4>" + _kv_grid([(k, _e(fmt(v))) for k, v in params.items()], per_column=8))
    stages = m.get("stages")
    if isinstance(stages, dict) and stages:
        rows = "".join(f"<tr><td>{_e(k)}</td><td class=\"num\">{_e(_seconds(v.get('seconds')))}</td>"
                       f"<td>{'resumed from a stored stage' if v.get('resumed') else ''}</td></tr>"
                       for k, v in stages.items() if isinstance(v, dict))
        parts.append('<h4>wall time per stage</h4><table class="claims narrow"><thead><tr><th>stage</th><th>wall time</th>'
                     f"<th></th></tr></thead><tbody>{rows}</tbody></table>")
    notes = m.get("notes")
    if isinstance(notes, list) and notes:
        parts.append("<h4>notes</h4><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    pk = m.get("packages")
    if isinstance(pk, dict) and pk:
        parts.append("<details><summary>package versions and host</summary>"
                     + _kv_table([(k, _e(fmt(v))) for k, v in pk.items()]
                                 + [(f"host {k}", _e(fmt(v))) for k, v in (m.get("host") or {}).items()]) + "</details>")
    src = model.get("source")
    if isinstance(src, dict) and src:
        parts.append("<details><summary>weights source</summary>" + _kv_table([(k, _e(fmt(v))) for k, v in src.items()])
                     + "</details>")
    return "".join(parts)


def _tables_html(run: RunFolder, page_dir: Path) -> str:
    small, large = [], []
    for t in run.tables:
        if t.stem == "claims":
            continue
        try:
            df = pd.read_csv(t)
        except Exception:  # noqa: BLE001
            large.append(f'<li><a href="{_e(_rel(t, page_dir))}">{_e(t.name)}</a> <span class="muted">(unreadable)</span></li>')
            continue
        pq = t.with_suffix(".parquet")
        extra = f' · <a href="{_e(_rel(pq, page_dir))}">parquet</a>' if pq.is_file() else ""
        link = f'<a href="{_e(_rel(t, page_dir))}">{_e(t.name)}</a>{extra}'
        if len(df) <= SMALL_TABLE_ROWS and len(df.columns) <= SMALL_TABLE_COLS:
            small.append(f"<details><summary>{_e(t.stem)} <span class=\"muted\">({len(df)} rows)</span></summary>"
                         f"<p class=\"note\">{link}</p>{_df_html(df)}</details>")
        else:
            cols = ", ".join(map(str, df.columns[:12])) + (", …" if len(df.columns) > 12 else "")
            large.append(f"<li>{link} <span class=\"muted\">{len(df)} rows × {len(df.columns)} columns: {_e(cols)}</span></li>")
    out = "".join(small)
    if large:
        out += "<p class=\"note\">Larger tables (open the CSV):</p><ul>" + "".join(large) + "</ul>"
    return out or "<p class=\"note\">no tables</p>"


def _files_html(run: RunFolder, page_dir: Path) -> str:
    files = [p for p in sorted(run.dir.rglob("*")) if p.is_file() and "stages" not in p.relative_to(run.dir).parts
             and not p.name.startswith(".")]
    items = "".join(f'<li><a href="{_e(_rel(p, page_dir))}">{_e(p.relative_to(run.dir).as_posix())}</a> '
                    f'<span class="muted">{_size(p)}</span></li>' for p in files)
    return f"<details><summary>all {len(files)} raw files</summary><ul class=\"files\">{items}</ul></details>"


def _analysis_section(run: RunFolder, page_dir: Path) -> tuple[str, int]:
    a = run.analysis
    title = ANALYSIS_TITLES.get(a, a)
    parts = [f'<section class="card" id="{_e(a)}"><h2>{_e(title)}</h2>']
    status = f'<a href="{_e(_rel(run.dir, page_dir))}/">{_e(_rel(run.dir, page_dir))}/</a> · wall time ' \
             f'{_e(_seconds(run.manifest.get("wall_seconds")))}'
    parts.append(f"<p class=\"note\">{status}</p>")
    for p in run.problems:
        parts.append(f'<div class="warn">{_e(p)}</div>')
    parts.append("<h3>Paper claims and what this run measured</h3>")
    if run.claims is not None and len(run.claims):
        parts.append(_claims_html(run, page_dir))
        if run.summary:
            parts.append("<details><summary>all summary numbers (summary.json)</summary>"
                         + _kv_grid(_summary_items(run.summary)) + "</details>")
    else:
        why = run.claims_problem or "no claims table exists for this run (tables/claims.csv)"
        parts.append(f'<div class="warn">{_e(why)}; the summary\'s numbers follow.</div>')
        parts.append(_kv_grid(_summary_items(run.summary)) if run.summary else "<p class=\"note\">no summary.json</p>")
    n = 0
    if run.figures:
        parts.append("<h3>Figures</h3>")
        for f in run.figures:
            block, k = _figure_block(f, page_dir, f"fig-{a}-{f.name}")
            parts.append(block)
            n += k
    parts.append("<h3>Tables</h3>" + _tables_html(run, page_dir))
    parts.append("<h3>Provenance</h3>" + _provenance_html(run))
    parts.append("<h3>Raw files</h3>" + _files_html(run, page_dir))
    parts.append("</section>")
    return "".join(parts), n


def _model_identity(runs: dict[str, RunFolder]) -> tuple[dict[str, Any], list[str]]:
    """The model the runs came from, and a warning for each run made with another model."""
    models = {a: r.model for a, r in runs.items() if r.model}
    if not models:
        return {}, []
    first = next(iter(models.values()))
    warn = [f"{a} was made with {m.get('spec')} ({m.get('weight_hash')}), not {first.get('spec')} ({first.get('weight_hash')})"
            for a, m in models.items() if (m.get("spec"), m.get("weight_hash")) != (first.get("spec"), first.get("weight_hash"))]
    return first, warn


def write_model_page(out: str | Path, title: Optional[str] = None) -> Path:
    """Write ``out/index.html`` (and ``out/plotly.min.js``) for the run folders under ``out``.

    Args:
        out: the output folder of one model (``OUT`` of ``interp reproduce``), holding ``ANALYSIS/`` folders.
        title: page title (default: the model spec recorded in the manifests, else the folder name).

    Returns:
        The page's path.
    """
    out = Path(out)
    runs = read_runs(out)
    model, warnings = _model_identity(runs)
    name = title or model.get("spec") or out.resolve().name
    js = write_plotlyjs(out)
    overview_rows = []
    for a in ANALYSIS_ORDER + tuple(x for x in runs if x not in ANALYSIS_ORDER):
        r = runs.get(a)
        if r is None:
            if a in ANALYSIS_ORDER:
                overview_rows.append(f"<tr><td>{_e(ANALYSIS_TITLES.get(a, a))}</td><td colspan=\"3\" class=\"muted\">not run</td></tr>")
            continue
        state = "finished" if r.manifest.get("finished") else ("unfinished" if r.manifest else "no manifest")
        overview_rows.append(f'<tr><td><a href="#{_e(a)}">{_e(ANALYSIS_TITLES.get(a, a))}</a></td><td>{_e(state)}</td>'
                             f"<td>{_counts_html(r.claims)}</td><td class=\"num\">{_e(_seconds(r.manifest.get('wall_seconds')))}</td></tr>")
    body = ['<section class="card" id="overview"><h2>Overview</h2>']
    for w in warnings:
        body.append(f'<div class="warn">mixed models: {_e(w)}</div>')
    ident = [("model", _e(model.get("spec", name))), ("family", _e(model.get("family", "—"))),
             ("architecture", _e(model.get("architecture", "—"))),
             ("layers × heads", _e(f"{model.get('n_layers', '—')} × {model.get('n_heads', '—')}")),
             ("vocabulary", _e(fmt(model.get("d_vocab")))),
             ("weights hash", f"<code>{_e(model.get('weight_hash', '—'))}</code>")]
    body.append(_kv_table(ident))
    body.append('<table class="claims"><thead><tr><th>analysis</th><th>run</th><th>claims</th><th>wall time</th></tr></thead>'
                f"<tbody>{''.join(overview_rows)}</tbody></table>")
    body.append("<p class=\"note\">Verdicts are read from each run's <code>tables/claims.csv</code>: "
                + " ".join(_badge(v) for v in VERDICTS) + "</p></section>")
    n = 0
    for r in runs.values():
        sec, k = _analysis_section(r, out)
        body.append(sec)
        n += k
    if not runs:
        body.append('<section class="card"><p class="note">no run folders here (ANALYSIS/summary.json).</p></section>')
    header = (f"<h1>{_e(name)}</h1><div class=\"sub\">{_e(model.get('family', ''))} · "
              f"{len(runs)} analysis run(s) · interactive figures need no network</div>")
    nav = [("overview", "Overview")] + [(a, ANALYSIS_TITLES.get(a, a).split(" (")[0]) for a in runs]
    page = _page(f"interp: {name}", header, nav, "".join(body), _rel(js, out))
    path = out / "index.html"
    _write_text(path, page)
    return path


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------ the cross-family page
def _model_label(folder: Path, runs: dict[str, RunFolder]) -> tuple[str, str]:
    model, _ = _model_identity(runs)
    return folder.name, model.get("family", "")


def claims_matrix(models: dict[str, dict[str, RunFolder]], analysis: str) -> list[dict[str, Any]]:
    """One row per claim of ``analysis`` (first seen order) with each model's claim row, or a reason it has none.

    Args:
        models: model folder name -> its runs.
        analysis: ``recall``, ``glitch`` or ``rome``.

    Returns:
        Rows ``{"claim", "paper", "cells": {model: dict | str}}``; a cell is the claims.csv row as a dict,
        or one of ``"not run"``, ``"no claims table"``, ``"not in this run"``.
    """
    order: list[str] = []
    paper: dict[str, str] = {}
    for runs in models.values():
        r = runs.get(analysis)
        if r is not None and r.claims is not None:
            for _, row in r.claims.iterrows():
                c = str(row["claim"])
                if c not in paper:
                    order.append(c)
                    paper[c] = str(row["paper"])
    rows = []
    for c in order:
        cells: dict[str, Any] = {}
        for m, runs in models.items():
            r = runs.get(analysis)
            if r is None:
                cells[m] = "not run"
            elif r.claims is None:
                cells[m] = "no claims table"
            else:
                hit = r.claims[r.claims["claim"].astype(str) == c]
                cells[m] = hit.iloc[0].to_dict() if len(hit) else "not in this run"
        rows.append({"claim": c, "paper": paper[c], "cells": cells})
    return rows


def _matrix_html(models: dict[str, dict[str, RunFolder]], analysis: str, root: Path) -> str:
    rows = claims_matrix(models, analysis)
    names = list(models)
    status = []
    for m in names:
        r = models[m].get(analysis)
        status.append("not run" if r is None else ("no claims table" if r.claims is None else ""))
    if not rows:
        lines = "; ".join(f"{m}: {s or 'claims table empty'}" for m, s in zip(names, status))
        return f"<p class=\"note\">No claims to compare ({_e(lines)}).</p>"
    head = "<tr><th>claim</th><th>paper</th>" + "".join(f"<th>{_e(m)}</th>" for m in names) + "</tr>"
    body = []
    for row in rows:
        tds = []
        for m in names:
            cell = row["cells"][m]
            if isinstance(cell, str):
                tds.append(f'<td class="muted">{_e(cell)}</td>')
                continue
            r = models[m][analysis]
            target = None
            fig = next((f for f in r.figures if f.name == str(cell.get("figure", "") or "")), None)
            if fig is not None:
                target = fig.html or fig.png or fig.json
            href = _rel(target, root) if target is not None else f"{_rel(root / m, root)}/index.html#{analysis}"
            tds.append(f'<td class="num">{_e(fmt_cell(cell.get("measured", "")))}<br>{_badge(str(cell.get("verdict", "")))} '
                       f'<a class="cell-link" href="{_e(href)}">{"figure" if target is not None else "page"}</a></td>')
        body.append(f"<tr><td>{_e(row['claim'])}</td><td class=\"num\">{_e(fmt_cell(row['paper']))}</td>{''.join(tds)}</tr>")
    return f'<table class="matrix"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def _n_layers(run: RunFolder, table: pd.DataFrame) -> int:
    n = run.model.get("n_layers")
    return int(n) if isinstance(n, int) and n > 0 else int(table["layer"].max()) + 1


def logit_lens_overlay(models: dict[str, dict[str, RunFolder]]) -> tuple[Optional[Any], list[str]]:
    """Answer probability by relative depth (layer / (n_layers - 1)), all relations pooled, one line per model and shots.

    Returns:
        The figure (None when no model has ``recall/tables/logit_lens.csv``) and the models without it.
    """
    import plotly.graph_objects as go

    fig, missing = go.Figure(), []
    for i, (m, runs) in enumerate(models.items()):
        r = runs.get("recall")
        t = r.table("logit_lens") if r else None
        if t is None or not {"relation", "layer", "answer_prob"} <= set(t.columns):
            missing.append(m)
            continue
        t = t[t["relation"].astype(str) == "all"] if "relation" in t.columns else t
        denom = max(_n_layers(r, t) - 1, 1)
        for s, g in (t.groupby("shots") if "shots" in t.columns else [(None, t)]):
            g = g.sort_values("layer")
            fig.add_trace(go.Scatter(x=g["layer"] / denom, y=g["answer_prob"], mode="lines+markers", marker=dict(size=4),
                                     name=f"{m} ({s}-shot)" if s is not None else m, legendgroup=m,
                                     line=dict(color=_PALETTE[i % len(_PALETTE)], dash="solid" if not s else "dash"),
                                     customdata=g["layer"], hovertemplate="layer %{customdata}<br>P(answer) %{y:.3f}"))
    if not fig.data:
        return None, missing
    fig.update_layout(title="Logit lens by relative depth: mean P(answer) on known facts, all relations<br>"
                            "<sup>solid: zero-shot, dashed: few-shot; x = layer / (layers − 1)</sup>",
                      xaxis_title="relative depth", yaxis_title="mean P(answer)", template="plotly_white", height=520)
    return fig, missing


def argument_heads_overlay(models: dict[str, dict[str, RunFolder]]) -> tuple[Optional[Any], list[str]]:
    """Every head's argument-head score (zero-shot, relations pooled) against its layer's relative depth."""
    import plotly.graph_objects as go

    fig, missing = go.Figure(), []
    for i, (m, runs) in enumerate(models.items()):
        r = runs.get("recall")
        t = r.table("argument_heads") if r else None
        if t is None or not {"layer", "score"} <= set(t.columns):
            missing.append(m)
            continue
        if "relation" in t.columns:
            t = t[t["relation"].astype(str) == "all"]
        if "shots" in t.columns and len(t):
            t = t[t["shots"] == t["shots"].min()]
        denom = max(_n_layers(r, t) - 1, 1) if len(t) else 1
        names = t["name"].astype(str) if "name" in t.columns else t["layer"].astype(str)
        fig.add_trace(go.Scatter(x=t["layer"] / denom, y=t["score"], mode="markers", name=m, text=names,
                                 marker=dict(color=_PALETTE[i % len(_PALETTE)], size=6, opacity=0.7),
                                 hovertemplate="head %{text}<br>score %{y:.4f}"))
    if not fig.data:
        return None, missing
    fig.update_layout(title="Argument-head scores by relative depth (zero-shot, relations pooled)<br>"
                            "<sup>score = attention to the argument × max(DLA onto the argument's token, 0); one marker per head</sup>",
                      xaxis_title="relative depth of the head's layer", yaxis_title="argument-head score",
                      template="plotly_white", height=520)
    return fig, missing


def collapse_denominator_overlay(models: dict[str, dict[str, RunFolder]]) -> tuple[Optional[Any], list[str]]:
    """ROME update denominators per model, collapsing edits apart from normal ones (log scale).

    Reads ``rome/tables/edits.csv``; plots ``denominator_normalized`` when every model's table has it
    (comparable across families whose keys differ in scale), else the raw ``denominator``.
    """
    import plotly.graph_objects as go

    tables, missing = {}, []
    for m, runs in models.items():
        r = runs.get("rome")
        t = r.table("edits") if r else None
        if t is None or "denominator" not in t.columns:
            missing.append(m)
            continue
        tables[m] = t[t["variant"].astype(str) == "rome"] if "variant" in t.columns else t
    if not tables:
        return None, missing
    col = "denominator_normalized" if all("denominator_normalized" in t.columns for t in tables.values()) else "denominator"
    colors = {True: "#c0392b", False: "#2b5fad", None: "#555"}
    fig, shown = go.Figure(), set()
    for m, t in tables.items():
        groups = [(str(k).lower() == "true", g) for k, g in t.groupby("collapse")] if "collapse" in t.columns else [(None, t)]
        for flag, g in groups:
            label = {True: "collapse", False: "no collapse", None: "all edits"}[flag]
            fig.add_trace(go.Box(x=[m] * len(g), y=g[col], name=label, legendgroup=label, offsetgroup=label,
                                 showlegend=label not in shown, boxpoints="all", jitter=0.4, pointpos=0,
                                 marker=dict(color=colors[flag], size=6), line=dict(color=colors[flag]),
                                 text=g["subject"].astype(str) if "subject" in g.columns else None))
            shown.add(label)
    what = ("normalised denominator (C⁻¹k̄)ᵀkᵘ / ‖C⁻¹k̄‖" if col == "denominator_normalized"
            else "denominator of the rank-one update")
    fig.update_layout(title=f"ROME update denominators per model: collapsing vs normal edits<br><sup>{what}; "
                            "plain ROME edits; log scale</sup>",
                      yaxis_type="log", yaxis_title=col.replace("_", " "), boxmode="group", template="plotly_white", height=520)
    return fig, missing


_GLITCH_KEYS = (("glitch_prevalence", "glitch prevalence"), ("precision", "precision"), ("recall", "recall"), ("f1", "F1"))


def glitch_overlay(models: dict[str, dict[str, RunFolder]]) -> tuple[Optional[Any], list[str]]:
    """Glitch-token prevalence and GlitchProber's precision, recall and F1 per model (from summary.json)."""
    import plotly.graph_objects as go

    fig, missing, present = go.Figure(), [], []
    for m, runs in models.items():
        r = runs.get("glitch")
        if r is None or not any(isinstance(r.summary.get(k), (int, float)) for k, _ in _GLITCH_KEYS):
            missing.append(m)
        else:
            present.append(m)
    for i, (k, label) in enumerate(_GLITCH_KEYS):
        ys = [models[m]["glitch"].summary.get(k) for m in present]
        fig.add_trace(go.Bar(x=present, y=ys, name=label, marker_color=_PALETTE[i % len(_PALETTE)],
                             text=[fmt(y) if isinstance(y, (int, float)) else "" for y in ys], textposition="outside"))
    if not present:
        return None, missing
    fig.update_layout(title="Glitch tokens per model: prevalence in the searched vocabulary and GlitchProber's detection quality",
                      barmode="group", yaxis=dict(range=[0, 1.1], title="fraction"), template="plotly_white", height=480)
    return fig, missing


_PALETTE = ["#2b5fad", "#d9822b", "#2e9c5a", "#c0392b", "#7d55b5", "#8c564b", "#e377c2", "#7f7f7f"]

OVERLAYS = (
    ("recall", "logit-lens", "Logit lens by relative depth", logit_lens_overlay),
    ("recall", "argument-heads", "Argument-head scores", argument_heads_overlay),
    ("rome", "collapse-denominators", "Collapse denominators", collapse_denominator_overlay),
    ("glitch", "glitch-f1", "Glitch prevalence and F1", glitch_overlay),
)


def write_families_page(root: str | Path, build_model_pages: bool = True) -> Path:
    """Write ``root/index.html``: each paper claim against every model under ``root``, plus overlay figures.

    Args:
        root: the folder holding one sub-folder per model (``root/<model>/<analysis>/``).
        build_model_pages: also (re)write each model's own page, which the cross-family page links to.

    Returns:
        The page's path.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    folders = model_folders(root)
    models = {f.name: read_runs(f) for f in folders}
    if build_model_pages:
        for f in folders:
            write_model_page(f)
    js = write_plotlyjs(root)
    body = ['<section class="card" id="models"><h2>Models</h2>']
    rows = []
    for f in folders:
        runs = models[f.name]
        ident, warn = _model_identity(runs)
        ran = ", ".join(a for a in ANALYSIS_ORDER if a in runs) or "—"
        missing = ", ".join(a for a in ANALYSIS_ORDER if a not in runs)
        page = f / "index.html"
        link = f'<a href="{_e(_rel(page, root))}">{_e(f.name)}</a>' if page.is_file() else _e(f.name)
        not_run = f' <span class="muted">(not run: {_e(missing)})</span>' if missing else ""
        warns = "".join(f'<div class="warn">{_e(w)}</div>' for w in warn)
        tables = [r.claims for r in runs.values() if r.claims is not None]
        counts = _counts_html(pd.concat(tables, ignore_index=True) if tables else None)
        wh = str(ident.get("weight_hash", "—"))
        rows.append(f"<tr><td>{link}</td><td>{_e(ident.get('spec', '—'))}</td><td>{_e(ident.get('family', '—'))}</td>"
                    f"<td>{_e(fmt(ident.get('n_layers')))}</td><td><code title=\"{_e(wh)}\">{_e(wh[:30])}</code></td>"
                    f"<td>{_e(ran)}{not_run}{warns}</td><td>{counts}</td></tr>")
    if rows:
        body.append('<table class="claims"><thead><tr><th>folder</th><th>model</th><th>family</th><th>layers</th>'
                    "<th>weights hash</th><th>analyses</th><th>claims</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    else:
        body.append("<p class=\"note\">no model folders here (ROOT/&lt;model&gt;/&lt;analysis&gt;/summary.json).</p>")
    body.append("<p class=\"note\">Verdicts come from each run's <code>tables/claims.csv</code>: "
                + " ".join(_badge(v) for v in VERDICTS) + "</p></section>")
    for a in ANALYSIS_ORDER:
        body.append(f'<section class="card" id="claims-{a}"><h2>{_e(ANALYSIS_TITLES[a])}: claims per model</h2>'
                    + _matrix_html(models, a, root) + "</section>")
    body.append('<section class="card" id="overlays"><h2>Families compared</h2>')
    for a, anchor, title, fn in OVERLAYS:
        fig, missing = fn(models) if models else (None, [])
        body.append(f"<h3 id=\"{_e(anchor)}\">{_e(title)}</h3>")
        if fig is None:
            body.append(f"<p class=\"note\">not run: no model has the {a} results this figure reads.</p>")
            continue
        if missing:
            body.append(f"<p class=\"note\">not run for {_e(', '.join(missing))}.</p>")
        body.append(_inline_plot(json.loads(fig.to_json()), f"overlay-{anchor}"))
    body.append("</section>")
    header = (f"<h1>interp: every model, every claim</h1><div class=\"sub\">{len(folders)} model folder(s) under "
              f"{_e(root.resolve().name)}/ · each column links to the model's own page</div>")
    nav = [("models", "Models")] + [(f"claims-{a}", ANALYSIS_TITLES[a].split(" (")[0]) for a in ANALYSIS_ORDER] \
        + [("overlays", "Families compared")]
    page = _page("interp: cross-family report", header, nav, "".join(body), _rel(js, root))
    path = root / "index.html"
    _write_text(path, page)
    return path
