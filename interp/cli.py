"""The ``interp`` command.

    interp models                                   what can be loaded, its family, cached or not
    interp run ANALYSIS --model SPEC --out DIR      one analysis (recall, glitch, rome)
    interp reproduce --model SPEC --out DIR         every analysis, plus DIR/index.html
    interp ablate-final-heads --model SPEC          before/after table of the recall mitigation

Bad input ends with one ``error:`` line and exit status 2; an interrupted run resumes from its
last finished stage when run again with the same arguments.
"""

from __future__ import annotations

import argparse
import html
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from interp.errors import InterpError

DEFAULT_OUT = "out"


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_sets(items: Optional[Sequence[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise InterpError(f"--set takes key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = _parse_value(v)
    return out


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from interp.loading import DEFAULT_SPEC

    p.add_argument("--model", default=DEFAULT_SPEC, metavar="SPEC",
                   help=f"registry name, .gguf path, local HF folder or hub id (default: {DEFAULT_SPEC})")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="float32 (default), bfloat16, float16")
    p.add_argument("--numerics", default="hf", choices=["hf", "tl"],
                   help="hf: raw HF weights (default); tl: TransformerLens-processed weights")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="small data sizes: minutes, not hours")
    p.add_argument("--seed", type=int, default=0, help="seed for Python, NumPy and torch (default 0)")
    p.add_argument("--fresh", action="store_true", help="recompute finished stages instead of resuming")
    p.add_argument("--no-png", action="store_true", help="write HTML figures only")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override an analysis parameter (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    from interp.analyses import ANALYSES

    parser = argparse.ArgumentParser(
        prog="interp",
        description="Mechanistic-interpretability analyses of causal LMs on TransformerLens: factual recall "
        "(Lv et al. 2024), glitch tokens (GlitchProber), ROME collapse (Yang et al. 2024).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("models", help="list loadable models, their family and whether they are cached",
                       description="List the registry's models: family, size, source and whether loading needs no download.")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("run", help="run one analysis", description="Run one analysis and write tables, figures, "
                       "summary.json and manifest.json to OUT/ANALYSIS. Finished stages are reused on a rerun.")
    p.add_argument("analysis", choices=list(ANALYSES), help="which analysis")
    _add_run_args(p)

    p = sub.add_parser("reproduce", help="run every analysis and write an index.html",
                       description="Run every analysis on one model and write OUT/index.html linking all figures.")
    p.add_argument("--only", nargs="*", choices=list(ANALYSES), help="restrict to these analyses")
    _add_run_args(p)

    p = sub.add_parser("ablate-final-heads", help="factual recall before/after ablating final-layer suppressor heads",
                       description="Choose (or take) final-layer heads that suppress correct answers, ablate them, "
                       "and print accuracy and answer probability on held-out facts before and after.")
    _add_model_args(p)
    p.add_argument("--heads", default="auto", help="'auto' (the mitigation chosen on train facts) or L.H,L.H,... (those heads)")
    p.add_argument("--method", default="auto", choices=["auto", "heads", "frequency", "both"],
                   help="with --heads auto: which mitigation to choose on the train facts (default auto: the best)")
    p.add_argument("--frequency-source", default="wikipedia", help="token counts for the frequency direction (default wikipedia)")
    p.add_argument("--quick", action="store_true", help="fewer facts")
    p.add_argument("--seed", type=int, default=0)
    return parser


def cmd_models(args: argparse.Namespace) -> int:
    from interp import loading

    rows = [loading.entry_status(name) for name in loading.registry()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<19} {'family':<9} {'params':<7} {'cached':<7} source")
    for r in rows:
        print(f"{r['name']:<19} {r['family']:<9} {r['params']:<7} {'yes' if r['cached'] else 'no':<7} {r['source']}")
        if r["installed"] is False:
            print(f"{'':<19} install: {r['install']}")
        if r["provenance"]:
            print(f"{'':<19} provenance: {r['provenance']}")
        if r["licence"]:
            print(f"{'':<19} licence: {r['licence']}")
    print("\nAlso accepted: a .gguf path, a local Hugging Face folder, or any org/name hub id "
          "(needs internet or a local HF cache).")
    return 0


def _load(args: argparse.Namespace):
    from interp.model import load_model

    t = time.perf_counter()
    print(f"loading {args.model} ...", file=sys.stderr)
    model = load_model(args.model, device=args.device, dtype=args.dtype, numerics=args.numerics)
    print(f"loaded {model} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return model


def cmd_run(args: argparse.Namespace) -> int:
    from interp.analyses import run_analysis

    overrides = _parse_sets(args.set)
    model = _load(args)
    folder = run_analysis(args.analysis, model, Path(args.out), args.quick, args.seed, args.fresh, not args.no_png, overrides)
    print((folder / "summary.json").read_text())
    return 0


def write_index(out: Path, model_spec: str, names: Sequence[str]) -> Path:
    """Write ``out/index.html`` linking every figure and summary under ``out``."""
    parts = [f"<h1>interp: {html.escape(model_spec)}</h1>"]
    for name in names:
        d = out / name
        if not d.is_dir():
            continue
        parts.append(f"<h2>{html.escape(name)}</h2>")
        summ = d / "summary.json"
        if summ.is_file():
            parts.append(f"<pre>{html.escape(summ.read_text())}</pre>")
        for fig in sorted((d / "figures").glob("*.html")):
            png = fig.with_suffix(".png")
            rel = fig.relative_to(out).as_posix()
            img = (f'<br><img src="{png.relative_to(out).as_posix()}" width="600">' if png.is_file() else "")
            parts.append(f'<p><a href="{rel}">{html.escape(fig.stem)}</a>{img}</p>')
        tables = sorted((d / "tables").glob("*.csv"))
        if tables:
            links = ", ".join(f'<a href="{t.relative_to(out).as_posix()}">{html.escape(t.stem)}</a>' for t in tables)
            parts.append(f"<p>tables: {links}</p>")
    page = "<!doctype html><meta charset='utf-8'><title>interp</title><body style='font-family:sans-serif'>" + "\n".join(parts)
    path = out / "index.html"
    path.write_text(page)
    return path


def cmd_reproduce(args: argparse.Namespace) -> int:
    from interp.analyses import ANALYSES, run_analysis

    overrides = _parse_sets(args.set)
    if overrides:
        raise InterpError("--set is per analysis; use `interp run ANALYSIS --set ...`")
    names = args.only or list(ANALYSES)
    model = _load(args)
    out = Path(args.out)
    for name in names:
        run_analysis(name, model, out, args.quick, args.seed, args.fresh, not args.no_png, {})
    index = write_index(out, args.model, names)
    print(f"wrote {index}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    mod = importlib.import_module("interp.recall.cli")
    model = _load(args)
    return int(mod.ablate_final_heads(model, heads=args.heads, quick=args.quick, seed=args.seed, method=args.method,
                                      frequency_source=args.frequency_source) or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    if "torch" not in sys.modules and os.environ.get("INTERP_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["INTERP_THREADS"]))
    handlers = {"models": cmd_models, "run": cmd_run, "reproduce": cmd_reproduce, "ablate-final-heads": cmd_ablate}
    try:
        return handlers[args.command](args)
    except InterpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished stages are saved; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
