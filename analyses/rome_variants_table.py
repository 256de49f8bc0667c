"""Yang et al. 2024, the main table: collapse rate, efficacy, generalisation, locality and perplexity
ratio of original ROME (mixed keys), consistent keys, and consistent keys + test-time prefix.

    python analyses/rome_variants_table.py --out out [--model smollm2-135m] [--quick]
"""

from interp.analyses import script_parser
from interp.rome.pipeline import load_results

if __name__ == "__main__":
    ap = script_parser(__doc__, out="out", out_help="folder of `interp run rome --out` (run there if missing)")
    args = ap.parse_args()
    t = load_results(args.out, args.model, args.quick)
    print(t["variants"].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
