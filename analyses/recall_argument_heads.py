"""Lv et al. 2024, argument-passing heads: score heatmap, attention-vs-attribution scatter, ablation check.

    python analyses/recall_argument_heads.py --model smollm2-135m --out figures [--quick]
"""

import torch

from interp.recall import pipeline
from interp.recall.ablation import head_name
from interp.recall.argument_heads import argument_ablation, argument_head_scores, top_argument_heads
from interp.recall.figures import argument_ablation_figure, argument_heads_figure

if __name__ == "__main__":
    model, run, p, args = pipeline.script_setup(__doc__, "recall_argument_heads")
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
