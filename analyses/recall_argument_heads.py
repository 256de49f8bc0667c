"""Lv et al. 2024, argument-passing heads: score heatmap, attention-vs-attribution scatter, ablation check.

    python analyses/recall_argument_heads.py --model smollm2-135m --out figures [--quick]
"""

import argparse

import torch

import interp
from interp.recall import pipeline
from interp.recall.ablation import head_name
from interp.recall.argument_heads import argument_ablation, argument_head_scores, top_argument_heads
from interp.recall.figures import argument_ablation_figure, argument_heads_figure
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
    run = Run(args.out, "recall_argument_heads", model=model, params=dict(p, quick=args.quick))
    with torch.no_grad():
        zero, _, _, _, kz, _ = pipeline.prepare(model, run, p)
        scores = argument_head_scores(model, zero, kz)
        top = top_argument_heads(scores, p["top_k_heads"], min_layer=p["min_arg_layer"])
        summary, draws = argument_ablation(model, zero.subset(kz), top, p["n_random"], run.seed, p["batch_size"])
    run.table("argument_heads", scores)
    run.table("argument_ablation", draws)
    run.figure("argument_heads", argument_heads_figure(scores, [head_name(h) for h in top], model.spec))
    run.figure("argument_ablation", argument_ablation_figure(draws, summary["base_prob"], model.spec))
    run.summary(top_argument_heads=[head_name(h) for h in top], **summary)
    print(run.finish())
