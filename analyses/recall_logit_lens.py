"""Lv et al. 2024, layer-wise answer probability: where the answer appears, what the last layers take away.

    python analyses/recall_logit_lens.py --model smollm2-135m --out figures [--quick]
"""

import argparse

import pandas as pd
import torch

import interp
from interp.recall import pipeline
from interp.recall.figures import logit_lens_figure
from interp.recall.logit_lens import final_drop, logit_lens_table
from interp.results import Run

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", default="figures")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--relations", default=None, help="comma-separated relation names (default: all)")
    args = ap.parse_args()
    model = interp.load_model(args.model)
    p = pipeline.resolve_params({"relations": args.relations}, args.quick)
    run = Run(args.out, "recall_logit_lens", model=model, params=dict(p, quick=args.quick))
    with torch.no_grad():
        zero, few, _, _, kz, kf = pipeline.prepare(model, run, p)
        table = pd.concat([logit_lens_table(model, zero, kz), logit_lens_table(model, few, kf)], ignore_index=True)
    run.table("logit_lens", table)
    run.table("logit_lens_drop", final_drop(table))
    run.figure("logit_lens", logit_lens_figure(table, model.spec))
    print(run.finish())
