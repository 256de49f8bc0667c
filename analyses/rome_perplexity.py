"""Yang et al. 2024, collapse detection: perplexity of generic text and of the model's own generations
before vs after each edit, per variant, with the collapse threshold and the ratio distribution.

    python analyses/rome_perplexity.py --out out [--model smollm2-135m] [--quick]
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
    thr = float(t["summary"].collapse_threshold_ppl_ratio[0])
    fig = figures.perplexity_before_after(t["edits"], thr, t["model"].spec[0])
    dest = Path(args.out) / "rome" / "figures" / "paper_perplexity.png"
    render_pngs([(fig, dest)])
    print(t["collapse_threshold"].T.to_string(header=False))
    print(f"wrote {dest}")
