"""Yang et al. 2024, the denominator/numerator figure: |(C^-1 k̄)^T k| vs ||v* - W k|| per edit,
collapse vs normal, by subject position, for mixed (original ROME) and consistent keys.

    python analyses/rome_denominators.py --out out [--model smollm2-135m] [--quick]
"""

import argparse
from pathlib import Path

from interp.rome import figures
from interp.rome.pipeline import load_results
from interp.results import render_pngs

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out", help="folder of `interp run rome --out` (run there if missing)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t = load_results(args.out, args.model, args.quick)
    s = t["summary"].iloc[0]
    fig = figures.denominator_scatter(t["edits"], float(s.collapse_threshold_ppl_ratio), t["model"].spec[0])
    dest = Path(args.out) / "rome" / "figures" / "paper_denominators.png"
    render_pngs([(fig, dest)])
    cols = ["denominator_median_collapse", "denominator_median_normal", "denominator_median_subject_first_token",
            "denominator_median_subject_later", "numerator_norm_mean_collapse", "numerator_norm_mean_normal"]
    print(s[cols].to_string())
    print(f"wrote {dest}")
