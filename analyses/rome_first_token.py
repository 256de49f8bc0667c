"""Yang et al. 2024, the first-token analysis: a 2-D projection of first-token vs later-token MLP keys
(with the requests' k^u and k̄), and the anomaly per layer.

    python analyses/rome_first_token.py --out out [--model smollm2-135m] [--quick]
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
    s, name = t["summary"].iloc[0], t["model"].spec[0]
    pts = t["first_token_projection"]
    folder = Path(args.out) / "rome" / "figures"
    render_pngs([
        (figures.first_token_projection(pts, int(s.layer), name, (float(s.first_token_pca_explained_1), float(s.first_token_pca_explained_2))), folder / "paper_first_token_projection.png"),
        (figures.first_token_layers(t["first_token_layers"], name), folder / "paper_first_token_layers.png"),
    ])
    print(t["first_token_layers"].to_string(index=False))
