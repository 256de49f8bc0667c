"""Benchmarks of the recall analysis's two shortcuts, as ratios measured in one run.

1. Few-shot prompts through the shared-prefix KV cache vs. the full prompts run whole.
2. Scoring a final-layer head ablation by the direct-path readout from captured values vs. a
   hooked forward pass over the same prompts.

    OMP_NUM_THREADS=2 python bench/bench_recall.py [--model smollm2-135m] [--facts 16]
"""

import argparse
import time

import torch

import interp
from interp.recall import ablate_heads
from interp.recall.activations import collect_activations, prompt_inputs
from interp.recall.facts import build_prompts, load_relations
from interp.recall.mitigation import ablated_readout, evaluate_recall


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--facts", type=int, default=16, help="facts per relation")
    args = ap.parse_args()
    model = interp.load_model(args.model)
    rels = load_relations(["country_capital", "city_country"])
    ps = build_prompts(model, rels, shots=3, max_facts=args.facts)
    with torch.no_grad():
        interp.capture(model, ps.token_ids[:2], logits=True)  # warm-up
        t_whole, whole = timed(lambda: interp.capture(model, ps.token_ids, logits=True, progress=False))

        def cached():
            out = torch.zeros(len(ps), model.d_vocab)
            for rel in ps.relations:
                rows = ps.rows(rel)
                prefix, ids, _ = prompt_inputs(model, ps, rows)
                out[torch.tensor(rows)] = interp.capture(model, ids, prefix=prefix, logits=True, progress=False).logits
            return out

        t_cached, lg = timed(cached)
        assert torch.allclose(lg, whole.logits, atol=1e-3), "prefix cache changed the logits"
        print(f"few-shot prompts ({len(ps)}): whole {t_whole:.2f}s, shared prefix {t_cached:.2f}s, "
              f"speed-up x{t_whole / t_cached:.2f}")

        last = model.n_layers - 1
        acts = collect_activations(model, ps, layers=[last])
        head = [(last, 0)]
        t_est, est = timed(lambda: ablated_readout(model, acts, head))
        with ablate_heads(model, head):
            t_real, real = timed(lambda: evaluate_recall(model, acts))
        err = float((est[0] - real[0]).abs().max())
        print(f"head {last}.0 ablation: hooked pass {t_real:.2f}s, direct-path readout {t_est:.3f}s, "
              f"speed-up x{t_real / t_est:.1f} (max |estimate - real| answer prob {err:.4f})")
