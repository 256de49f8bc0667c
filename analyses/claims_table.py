"""The paper claims per model as Markdown (the README's per-family claims tables).

Reads every model folder under ROOT (``figures/`` by default: ``figures/<model>/<analysis>/tables/claims.csv``)
through the same claims matrix as the cross-family page, and prints one table per analysis: a row per
claim, a column per model with the measured value and the verdict.

    python analyses/claims_table.py [ROOT] [--model NAME,...]
"""

from __future__ import annotations

import argparse

from interp.report import claims_matrix, model_folders, read_runs

TITLES = {"recall": "Factual recall (Lv et al. 2024)", "glitch": "Glitch tokens (GlitchProber)",
          "rome": "ROME collapse (Yang et al. 2024)"}


def cell(value: object) -> str:
    """A claims.csv row as 'verdict: measured' (a bare number to 3 significant digits), or the reason there is none."""
    if isinstance(value, dict):
        measured = value["measured"]
        try:
            measured = f"{float(measured):.3g}"
        except (TypeError, ValueError):
            pass
        return f"**{value['verdict']}**: {measured}".replace("|", "/").replace("\n", " ")
    return str(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default="figures", help="folder of model folders (default: figures)")
    ap.add_argument("--model", default=None, help="only these model folders (comma-separated names)")
    args = ap.parse_args()
    keep = set(args.model.split(",")) if args.model else None
    models = {f.name: read_runs(f) for f in model_folders(args.root) if keep is None or f.name in keep}
    for analysis, title in TITLES.items():
        rows = claims_matrix(models, analysis)
        if not rows:
            continue
        print(f"\n#### {title}\n")
        print("| claim | " + " | ".join(f"`{m}`" for m in models) + " |")
        print("|---|" + "---|" * len(models))
        for r in rows:
            print(f"| {r['claim']} | " + " | ".join(cell(r["cells"][m]) for m in models) + " |")


if __name__ == "__main__":
    main()
