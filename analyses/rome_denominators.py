"""Yang et al. 2024, the denominator/numerator figure: |(C^-1 k̄)^T k| vs ||v* - W k|| per edit,
collapse vs normal, by subject position, for mixed (original ROME) and consistent keys.

    python analyses/rome_denominators.py --out out [--model smollm2-135m] [--quick]
"""

from pathlib import Path

from interp.analyses import script_parser
from interp.results import render_pngs
from interp.rome import figures
from interp.rome.pipeline import load_results

if __name__ == "__main__":
    ap = script_parser(__doc__, out="out", out_help="folder of `interp run rome --out` (run there if missing)")
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
