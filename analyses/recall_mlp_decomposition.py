"""Lv et al. 2024, MLP = activation (coefficients on head outputs) + function application (intercept).

    python analyses/recall_mlp_decomposition.py --model smollm2-135m --out figures [--quick]
"""

import argparse

import torch

import interp
from interp.recall import pipeline
from interp.recall.argument_heads import argument_head_scores, top_argument_heads
from interp.recall.figures import mlp_decomposition_figure
from interp.recall.mlp_decomposition import mlp_decomposition_tables
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
    run = Run(args.out, "recall_mlp_decomposition", model=model, params=dict(p, quick=args.quick))
    with torch.no_grad():
        zero, _, _, _, kz, _ = pipeline.prepare(model, run, p)
        top = top_argument_heads(argument_head_scores(model, zero, kz), p["top_k_heads"], min_layer=p["min_arg_layer"])
        first = min(L for L, _ in top)
        fits, coefs, _ = mlp_decomposition_tables(model, zero, top, layers=list(range(first, model.n_layers)), rows=kz)
    run.table("mlp_decomposition", fits)
    run.table("mlp_coefficients", coefs)
    run.figure("mlp_decomposition", mlp_decomposition_figure(fits, model.spec))
    print(run.finish())
