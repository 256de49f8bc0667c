"""Foundation benchmarks on the embedded model; prints ratios measured in this one run.

1. capture of a typical analysis's hooks vs the plain HF forward pass on the same batch (target <= 1.3x)
2. shared-prefix reuse on a vocabulary-scan workload (20-token template + 1 varying token) vs
   recomputing the template for every token (target >= 5x faster)
3. second (cached) load vs first load of the embedded model (target <= 0.25x)

Run: python bench/bench_core.py [--repeats 3]
"""

from __future__ import annotations

import argparse

import torch

import interp


def bench_load() -> tuple[float, float]:
    """First load (dequantization into an empty cache) and cached load of the embedded model."""
    from bench_families import first_and_cached  # this folder is on sys.path when run as a script

    return first_and_cached("smollm2-135m")


def main() -> None:
    from commands import best_of  # this folder is on sys.path when run as a script

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")

    first, second = bench_load()
    model = interp.load_model("smollm2-135m", device="cpu")

    # 1. capture vs plain HF forward
    prompts = [f"As we all know, the capital of country number {i} is" for i in range(args.batch)]
    enc = model.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    hooks = ([f"blocks.{L}.attn.hook_pattern" for L in range(0, 30, 3)]
             + [f"blocks.{L}.mlp.hook_post" for L in range(0, 30, 2)]
             + [f"blocks.{L}.hook_resid_post" for L in range(30)]
             + [f"blocks.{L}.attn.hook_result" for L in range(20, 30)])

    def hf_forward():
        with torch.no_grad():
            model.hf_model(**enc)

    def cap():
        interp.capture(model, prompts, hooks=hooks, logits=True, batch_size=args.batch, progress=False)

    hf_forward(); cap()
    t_hf, t_cap = best_of(hf_forward, args.repeats), best_of(cap, args.repeats)

    # 2. shared prefix on a vocabulary scan
    template = model.chat_prompt("Please repeat after me the string '")
    template_ids = model.encode(template)[-20:]
    vocab = list(range(1000, 1512))

    def with_prefix():
        interp.capture(model, [[t] for t in vocab], hooks=["blocks.10.mlp.hook_post"], prefix=template_ids,
                       batch_size=128, progress=False)

    def without_prefix():
        interp.capture(model, [template_ids + [t] for t in vocab], hooks=["blocks.10.mlp.hook_post"],
                       batch_size=128, progress=False)

    with_prefix()
    t_pre, t_full = best_of(with_prefix, args.repeats), best_of(without_prefix, 1)

    print(f"\n{'benchmark':<58} {'value':>9}  target")
    print(f"{'capture (' + str(len(hooks)) + ' hooks) / plain HF forward, same batch':<58} {t_cap / t_hf:>8.2f}x  <= 1.30x"
          f"   ({t_cap:.2f}s vs {t_hf:.2f}s, {args.batch} prompts)")
    print(f"{'vocab scan: recompute template / shared-prefix reuse':<58} {t_full / t_pre:>8.2f}x  >= 5x"
          f"   ({t_full:.2f}s vs {t_pre:.2f}s, {len(vocab)} tokens, 20-token template)")
    print(f"{'second (cached) load / first load':<58} {second / first:>8.2f}x  <= 0.25x"
          f"   ({second:.2f}s vs {first:.2f}s)")


if __name__ == "__main__":
    main()
