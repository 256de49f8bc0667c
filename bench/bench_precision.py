"""bf16 against fp32 on one model: answer probabilities, ROME denominators, glitch labels.

    python bench/bench_precision.py [--model smollm2-135m] [--dtype bfloat16] [--precision mixed|pure]
                                    [--facts 8] [--requests 6]

Prints each measured difference beside the tolerance ``interp.precision.TOLERANCES`` states, and as
its last line ``within tolerance: yes|no``.
"""

import argparse
import json

from interp.precision import TOLERANCES, compare_precision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    ap.add_argument("--precision", default="mixed", choices=["mixed", "pure"],
                    help="mixed: float32 attention scores, biases and residual stream (the commands' default); pure: all in DTYPE")
    ap.add_argument("--device", default=None)
    ap.add_argument("--facts", type=int, default=8, help="facts per relation")
    ap.add_argument("--requests", type=int, default=6, help="ROME requests")
    ap.add_argument("--cov-tokens", type=int, default=8192)
    ap.add_argument("--glitch-ids", type=int, default=256)
    a = ap.parse_args()
    r = compare_precision(a.model, a.dtype, max_facts=a.facts, n_requests=a.requests, cov_tokens=a.cov_tokens,
                          n_glitch=a.glitch_ids, device=a.device, precision=a.precision)
    print(json.dumps({k: v for k, v in r.items() if k != "within_tolerance"}, indent=1))
    for k, tol in TOLERANCES.items():
        print(f"{k:<28} {r[k]:.4g}  ({'>=' if k.endswith('_min') else '<='} {tol})  {'ok' if r['within_tolerance'][k] else 'OUT'}")
    print(f"within tolerance: {'yes' if all(r['within_tolerance'].values()) else 'no'}")


if __name__ == "__main__":
    main()
