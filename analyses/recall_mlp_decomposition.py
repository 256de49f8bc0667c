"""Lv et al. 2024, MLP = activation (coefficients on head outputs) + function application (intercept).

    python analyses/recall_mlp_decomposition.py --model smollm2-135m --out figures [--quick]
"""

import torch

from interp.recall import pipeline
from interp.recall.argument_heads import argument_head_scores, top_argument_heads
from interp.recall.figures import mlp_decomposition_figure
from interp.recall.mlp_decomposition import mlp_decomposition_tables

if __name__ == "__main__":
    model, run, p, args = pipeline.script_setup(__doc__, "recall_mlp_decomposition")
    with torch.no_grad():
        zero, _, _, _, kz, _ = pipeline.prepare(model, run, p)
        top = top_argument_heads(argument_head_scores(model, zero, kz), p["top_k_heads"], min_layer=p["min_arg_layer"])
        first = min(L for L, _ in top)
        fits, coefs, _ = mlp_decomposition_tables(model, zero, top, layers=list(range(first, model.n_layers)), rows=kz)
    run.table("mlp_decomposition", fits)
    run.table("mlp_coefficients", coefs)
    run.figure("mlp_decomposition", mlp_decomposition_figure(fits, model.spec))
    print(run.finish())
