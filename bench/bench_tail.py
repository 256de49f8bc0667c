"""Re-running only the last token (``TailCache`` with ``last_only``) against re-running whole tails,
as ratios measured in one run, on the recall analysis's two uses:

1. A final-layer mitigation's train score (``evaluate_recall``, ``from_layer`` = the final block):
   3-shot prompts of the packaged facts, heads of the final layer removed at every position.
2. The argument ablation (``argument_heads._mean_ablated_probs``): zero-shot prompts, five heads of
   middle layers mean-ablated at the last position, the blocks from the first of them re-run.

Both sides read the same streams (kept once, as the pipeline keeps them); the kept keys and values
of the last-token side are made on its first call, which is timed apart. Answer probabilities and
correctness are compared too.

    OMP_NUM_THREADS=2 python bench/bench_tail.py [--model gemma-3-270m] [--dtype bfloat16] [--facts 24]
"""

import argparse

import torch

import interp
from interp.recall.activations import collect_activations, prompt_tails
from interp.recall.argument_heads import _mean_ablated_probs, relation_mean_z
from interp.recall.facts import build_prompts, load_relations
from interp.recall.mitigation import Mitigation, evaluate_recall


if __name__ == "__main__":
    from commands import timed  # this folder is on sys.path when run as a script

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--dtype", default=None, help="e.g. bfloat16 (the mixed policy)")
    ap.add_argument("--facts", type=int, default=24, help="facts per relation")
    args = ap.parse_args()
    model = interp.load_model(args.model, dtype=args.dtype)
    rels = load_relations()
    last = model.n_layers - 1
    with torch.no_grad():
        few = collect_activations(model, build_prompts(model, rels, shots=3, templates=[0], max_facts=args.facts), layers=[last])
        mit = Mitigation("heads", [(last, 0), (last, 2)], "zero")
        prompt_tails(model, few, last, 32)  # the streams, kept once for both sides
        with model.hooks(mit.hooks(model)):
            t_whole, (p_w, ok_w) = timed(lambda: evaluate_recall(model, few, from_layer=last))
            t_first, _ = timed(lambda: evaluate_recall(model, few, from_layer=last, last_only=True), repeats=1)
            t_last, (p_l, ok_l) = timed(lambda: evaluate_recall(model, few, from_layer=last, last_only=True))
        n_tok = sum(len(t) for t in few.prompts.token_ids) / len(few.prompts)
        print(f"{model.spec} {model.weights_dtype}: final-layer mitigation on {len(few.prompts)} 3-shot prompts "
              f"(mean {n_tok:.0f} tokens): whole tails {t_whole:.2f} s, last token {t_last:.2f} s "
              f"({t_whole / t_last:.1f}x; first call with its keys and values {t_first:.2f} s); "
              f"max prob diff {float((p_w - p_l).abs().max()):.2e}, correctness equal {bool(torch.equal(ok_w, ok_l))}")

        zero = collect_activations(model, build_prompts(model, rels, shots=0, templates=[0, 1, 2], max_facts=args.facts))
        start = max(1, model.n_layers // 3)
        heads = [(start, 0), (start + 1, 1), (start + 2, 0), (last - 2, 1), (last - 1, 0)]
        means = relation_mean_z(zero, sorted({L for L, _ in heads}))
        prompt_tails(model, zero, start, 32)
        t_whole, a_w = timed(lambda: _mean_ablated_probs(model, zero, heads, means, 32, "whole", start, last_only=False))
        t_first, _ = timed(lambda: _mean_ablated_probs(model, zero, heads, means, 32, "last", start), repeats=1)
        t_last, a_l = timed(lambda: _mean_ablated_probs(model, zero, heads, means, 32, "last", start))
        n_tok = sum(len(t) for t in zero.prompts.token_ids) / len(zero.prompts)
        print(f"argument-style ablation from block {start} of {model.n_layers} on {len(zero.prompts)} zero-shot prompts "
              f"(mean {n_tok:.0f} tokens): whole tails {t_whole:.2f} s, last token {t_last:.2f} s "
              f"({t_whole / t_last:.1f}x; first call {t_first:.2f} s); max prob diff {float((a_w - a_l).abs().max()):.2e}")
