"""ROME's key statistic C = E[k k^T]: how C^-1 and the edit directions C^-1 k̄ settle as samples grow.

    python analyses/rome_covariance.py --out out [--model smollm2-135m] [--quick]
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
    conv = t["covariance_convergence"]
    fig = figures.covariance_convergence(conv, int(s.layer), str(s.cov_corpus), t["model"].spec[0])
    dest = Path(args.out) / "rome" / "figures" / "paper_covariance.png"
    render_pngs([(fig, dest)])
    print(conv.to_string(index=False))
