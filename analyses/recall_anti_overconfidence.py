"""Lv et al. 2024, anti-overconfidence: final-layer heads' first-position attention, answer attribution
and frequency correlation, and the final MLP with its intercept.

    python analyses/recall_anti_overconfidence.py --model smollm2-135m --out figures [--quick] [--corpus FILE]
"""

import torch

from interp.corpus import GENERIC_ID, generic_texts, read_texts
from interp.recall import pipeline
from interp.recall.anti_overconfidence import anti_overconfidence_table, token_log_frequency
from interp.recall.argument_heads import argument_head_scores, top_argument_heads
from interp.recall.figures import anti_overconfidence_figure
from interp.recall.mlp_decomposition import mlp_decomposition_tables

if __name__ == "__main__":
    model, run, p, args = pipeline.script_setup(__doc__, "recall_anti_overconfidence", with_corpus=True)
    layers = list(range(model.n_layers - p["final_layers"], model.n_layers))
    with torch.no_grad():
        zero, _, _, _, kz, _ = pipeline.prepare(model, run, p)
        top = top_argument_heads(argument_head_scores(model, zero, kz), p["top_k_heads"], min_layer=p["min_arg_layer"])
        _, _, decs = mlp_decomposition_tables(model, zero, top, layers=layers, rows=kz)
        intercepts = {L: torch.stack([d.intercept for (_, l2), d in decs.items() if l2 == L]).mean(0) for L in layers}
        if args.corpus:
            log_freq, source = token_log_frequency(model, read_texts(args.corpus), "corpus"), f"corpus counts ({args.corpus})"
        else:
            texts = generic_texts()[: p["generic_texts"]] if p["generic_texts"] else generic_texts()
            log_freq, source = token_log_frequency(model, texts, "model"), f"model mean next-token distribution on {GENERIC_ID}"
        table = anti_overconfidence_table(model, zero, log_freq, layers, intercepts, rows=kz)
    run.table("anti_overconfidence", table)
    run.figure("anti_overconfidence", anti_overconfidence_figure(table, source, model.spec))
    print(run.finish())
