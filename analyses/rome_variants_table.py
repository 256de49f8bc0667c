"""Yang et al. 2024, the main table: collapse rate, efficacy, generalisation, locality and perplexity
ratio of original ROME (mixed keys), consistent keys, and consistent keys + test-time prefix.

    python analyses/rome_variants_table.py --out out [--model smollm2-135m] [--quick]
"""

import argparse

from interp.rome.pipeline import load_results

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out", help="folder of `interp run rome --out` (run there if missing)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t = load_results(args.out, args.model, args.quick)
    print(t["variants"].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
