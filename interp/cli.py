"""The ``interp`` command.

    interp models                                   what can be loaded, its family, cached or not
    interp run ANALYSIS --model SPEC --out DIR      one analysis (recall, glitch, rome)
    interp reproduce --model SPEC --out DIR         every analysis, plus the report page DIR/index.html
    interp report --out DIR                         rebuild DIR/index.html from DIR's run folders (no model)
    interp report --families ROOT                   the cross-family page ROOT/index.html (ROOT/<model>/...)
    interp ablate-final-heads --model SPEC          before/after table of the recall mitigation

    interp --version                                the installed version

Bad input (a parameter, device, dtype or output folder not allowed, a full disk) ends with one
``error:`` line and exit status 2, checked before the model loads where it can be, and leaves no
half-written file. An interrupted run resumes from its last finished stage when run again with the
same arguments; a run into a folder that another run holds, or that holds a run made with other
settings, is refused unless ``--fresh``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import importlib.metadata
import json
import os
import sys
import tempfile
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


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one ``error:`` line (exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog.split(' ', 1)[-1] if ' ' in self.prog else self.prog}: {message} "
              f"(see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


DTYPES = ("float32", "bfloat16", "float16")


def version() -> str:
    """The installed version of interp (package metadata; the source tree's when not installed)."""
    try:
        return importlib.metadata.version("interp")
    except importlib.metadata.PackageNotFoundError:
        from interp import __version__

        return __version__


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from interp.loading import DEFAULT_SPEC

    p.add_argument("--model", default=DEFAULT_SPEC, metavar="SPEC",
                   help=f"registry name, .gguf path, local HF folder or hub id (default: {DEFAULT_SPEC})")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: cuda if available)")
    p.add_argument("--dtype", default=None, metavar="DTYPE",
                   help=f"{', '.join(DTYPES)} (default: float32; bfloat16 is slower on a CPU without bf16 instructions)")
    p.add_argument("--precision", default="mixed", choices=["mixed", "pure"],
                   help="with --dtype below float32: mixed keeps attention scores, biases and the residual stream in float32 "
                        "(default; pure bfloat16 moves Qwen2.5's answer probabilities by up to 0.35), pure runs all in DTYPE")
    p.add_argument("--device-map", default=None, choices=["auto", "balanced", "sequential"],
                   help="spread a model larger than one GPU over several (accelerate); overrides --device")
    p.add_argument("--numerics", default="hf", choices=["hf", "tl"],
                   help="hf: raw HF weights (default); tl: TransformerLens-processed weights")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="small data sizes: minutes, not hours")
    p.add_argument("--seed", type=int, default=0, help="seed for Python, NumPy and torch, 0..2**32-1 (default 0)")
    p.add_argument("--fresh", action="store_true",
                   help="replace the folder's content (another run's results or finished stages) instead of resuming")
    p.add_argument("--no-png", action="store_true", help="write HTML figures only")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="set an analysis parameter (repeatable; `interp run ANALYSIS --help` lists them)")


def build_parser() -> argparse.ArgumentParser:
    from interp.analyses import ANALYSES, declared, get

    parser = _Parser(
        prog="interp",
        description="Mechanistic-interpretability analyses of causal LMs on TransformerLens: factual recall "
        "(Lv et al. 2024), glitch tokens (GlitchProber), ROME collapse (Yang et al. 2024).",
    )
    parser.add_argument("--version", action="version", version=f"interp {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("models", help="list loadable models, their family and whether they are cached",
                       description="List the registry's models: family, size, source and whether loading needs no download.")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("run", help="run one analysis", description="Run one analysis and write tables, figures, "
                       "summary.json and manifest.json to OUT/ANALYSIS. Finished stages are reused on a rerun; "
                       "`interp run ANALYSIS --help` lists the analysis's parameters.")
    runs = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True, parser_class=_Parser)
    for name in ANALYSES:
        mod = get(name)
        a = runs.add_parser(name, help=getattr(mod, "DESCRIPTION", name), description=getattr(mod, "DESCRIPTION", name),
                            epilog=declared(name).help_table(), formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_run_args(a)

    p = sub.add_parser("reproduce", help="run every analysis and write the report page OUT/index.html",
                       description="Run every analysis on one model and write the report page OUT/index.html (claims, figures, tables, provenance).")
    p.add_argument("--only", nargs="*", choices=list(ANALYSES), help="restrict to these analyses")
    _add_run_args(p)

    p = sub.add_parser("report", help="rebuild the report pages from existing run folders (no model needed)",
                       description="Write OUT/index.html for one model's run folders (OUT/ANALYSIS/), and/or the "
                       "cross-family page ROOT/index.html for every model folder under ROOT (ROOT/<model>/ANALYSIS/). "
                       "Each page loads one plotly.min.js written beside it and works offline from file://.")
    p.add_argument("--out", metavar="DIR", help="one model's output folder (as given to `interp reproduce --out`)")
    p.add_argument("--families", metavar="ROOT", help="folder of model folders, e.g. figures (also rebuilds each model's page)")

    p = sub.add_parser("ablate-final-heads", help="factual recall before/after the mitigation chosen on train facts",
                       description="Choose on the train facts the mitigation of the final-layer suppression (suppressor "
                       "heads, the final MLP's frequency component, or both; the choice interp.recall.mitigate applies), "
                       "or take given heads, and print accuracy and answer probability on held-out facts before and after.")
    _add_model_args(p)
    p.add_argument("--heads", default="auto", help="'auto' (the mitigation chosen on train facts) or L.H,L.H,... (those heads)")
    p.add_argument("--method", default="auto", choices=["auto", "heads", "frequency", "both"],
                   help="with --heads auto: which mitigation to choose on the train facts (default auto: the best)")
    p.add_argument("--frequency-source", default="wikipedia", help="token counts for the frequency direction (default wikipedia)")
    p.add_argument("--quick", action="store_true", help="fewer facts")
    p.add_argument("--seed", type=int, default=0)
    return parser


def check_model_args(args: argparse.Namespace) -> None:
    """Check ``--device``, ``--dtype`` and ``--seed`` before the model loads.

    Raises:
        InterpError: naming the option and what it allows.
    """
    import torch

    if args.dtype is not None and args.dtype not in DTYPES:
        raise InterpError(f"--dtype {args.dtype}: allowed: {', '.join(DTYPES)}")
    if args.device is not None:
        try:
            dev = torch.device(args.device)
        except (RuntimeError, ValueError):
            raise InterpError(f"--device {args.device}: not a device; allowed: cpu, cuda, cuda:N, mps") from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise InterpError(f"--device {args.device}: CUDA is not available here; use --device cpu")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise InterpError(f"--device {args.device}: there are {torch.cuda.device_count()} CUDA devices")
        elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InterpError(f"--device {args.device}: MPS is not available here; use --device cpu")
        elif dev.type not in ("cpu", "cuda", "mps"):
            raise InterpError(f"--device {args.device}: allowed: cpu, cuda, cuda:N, mps")
    seed = getattr(args, "seed", 0)
    if not 0 <= seed < 2**32:
        raise InterpError(f"--seed {seed}: allowed: an integer in 0..{2**32 - 1}")


def check_out(out: Path) -> None:
    """Check that ``out`` is (or can become) a writable folder, before the model loads.

    Raises:
        InterpError: when ``out`` or a folder on its way is a file, or it cannot be written.
    """
    for p in [out, *out.parents]:
        if p.exists() and not p.is_dir():
            raise InterpError(f"--out {out}: {p} is a file, not a folder")
    anc = out
    while not anc.exists():
        anc = anc.parent
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InterpError(f"--out {out}: {anc} is not writable")
    try:
        with tempfile.NamedTemporaryFile(dir=anc, prefix=".interp-probe-"):
            pass
    except OSError as e:
        raise InterpError(f"--out {out}: cannot write in {anc} ({e.strerror or e})") from None


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
    model = load_model(args.model, device=args.device, dtype=args.dtype, numerics=args.numerics,
                       device_map=getattr(args, "device_map", None), precision=getattr(args, "precision", "mixed"))
    print(f"loaded {model} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return model


def _ranks(args: argparse.Namespace, body: Any) -> int:
    """Run ``body()`` as one process, or under ``torchrun`` as rank 0 while the other ranks load the
    same model and take their share of each sharded pass (:mod:`interp.distributed`)."""
    from interp import distributed

    world = distributed.join(args.device or "cpu")
    if world.size == 1:
        return body()
    if not world.is_main:  # rank 0 checks the options and owns the results folder
        check_model_args(args)
        model = _load(args)
        n = distributed.serve(model)
        print(f"rank {world.rank}/{world.size}: took part in {n} sharded pass(es)", file=sys.stderr)
        distributed.finish(world)
        return 0
    try:
        return body()
    finally:
        distributed.release()
        distributed.finish(world)


def cmd_run(args: argparse.Namespace) -> int:
    from interp.analyses import run_analysis

    def body() -> int:
        _check_runs(args, [args.analysis], _parse_sets(args.set))
        model = _load(args)
        folder = run_analysis(args.analysis, model, Path(args.out), args.quick, args.seed, args.fresh, not args.no_png,
                              _parse_sets(args.set))
        print((folder / "summary.json").read_text())
        return 0

    return _ranks(args, body)


def cmd_report(args: argparse.Namespace) -> int:
    from interp.report import is_run_folder, model_folders, write_families_page, write_model_page

    if not args.out and not args.families:
        raise InterpError("report needs --out DIR (one model's page) or --families ROOT (the cross-family page)")
    if args.out:
        out = Path(args.out)
        if not out.is_dir() or not any(is_run_folder(p) for p in out.iterdir()):
            raise InterpError(f"--out {out}: no run folders there (expected {out}/ANALYSIS/summary.json)")
        print(f"wrote {write_model_page(out)}")
    if args.families:
        root = Path(args.families)
        if not model_folders(root):
            raise InterpError(f"--families {root}: no model folders there (expected {root}/MODEL/ANALYSIS/summary.json)")
        print(f"wrote {write_families_page(root)}")
    return 0


def _check_runs(args: argparse.Namespace, names: Sequence[str], overrides: dict[str, Any]) -> None:
    """Every check that needs no model: options, parameters, the output folders."""
    from interp.analyses import resolve_run_params
    from interp.loading import precision_label
    from interp.results import check_folder

    check_model_args(args)
    out = Path(args.out)
    check_out(out)
    for name in names:
        _, params = resolve_run_params(name, overrides, args.quick)
        check_folder(out, name, args.model, args.numerics, args.dtype or "float32", args.seed, params, args.fresh,
                     precision=precision_label(args.dtype, args.precision))


def cmd_reproduce(args: argparse.Namespace) -> int:
    from interp.analyses import ANALYSES, run_analysis

    overrides = _parse_sets(args.set)
    if overrides:
        raise InterpError("--set is per analysis; use `interp run ANALYSIS --set ...`")
    names = args.only or list(ANALYSES)

    def body() -> int:
        _check_runs(args, names, {})
        model = _load(args)
        out = Path(args.out)
        for name in names:
            run_analysis(name, model, out, args.quick, args.seed, args.fresh, not args.no_png, {})
        from interp.report import write_model_page

        print(f"wrote {write_model_page(out)}")
        return 0

    return _ranks(args, body)


def cmd_ablate(args: argparse.Namespace) -> int:
    mod = importlib.import_module("interp.recall.cli")
    check_model_args(args)
    if args.heads.strip().lower() != "auto":
        from interp.recall.ablation import check_head_syntax

        check_head_syntax(args.heads)
    from interp.frequency import SOURCE_ALLOWS, source_problem

    why = source_problem(args.frequency_source)
    if why:
        raise InterpError(f"--frequency-source {args.frequency_source}: {why}; allowed: {SOURCE_ALLOWS}")
    model = _load(args)
    return int(mod.ablate_final_heads(model, heads=args.heads, quick=args.quick, seed=args.seed, method=args.method,
                                      frequency_source=args.frequency_source) or 0)


_QUIET = {"INTERP_PROGRESS": "lines", "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def _quiet_bars() -> dict[str, Optional[str]]:
    """Progress bars redraw one line with carriage returns: fine on a terminal, noise in a log
    file. When stderr is not a terminal, stages report one line each, and long loops a line a
    minute (:mod:`interp.progress`), instead. Returns the previous environment values (restored
    when the command ends)."""
    before = {k: os.environ.get(k) for k in _QUIET}
    if not sys.stderr.isatty():
        for k, v in _QUIET.items():
            os.environ.setdefault(k, v)
    return before


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if not args.command:
        parser.print_help()
        return 0
    before = _quiet_bars()
    if "torch" not in sys.modules and os.environ.get("INTERP_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["INTERP_THREADS"]))
    handlers = {"models": cmd_models, "run": cmd_run, "reproduce": cmd_reproduce, "report": cmd_report,
                "ablate-final-heads": cmd_ablate}
    try:
        return handlers[args.command](args)
    except InterpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        what = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        print(f"error: {what}{where}; finished stages are kept, nothing half-written is left", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished stages are saved; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    sys.exit(main())
