"""ROME benchmarks, as ratios measured in one run (no timed tests):

* keys with ``stop_at_layer`` (the capture stops after the edited layer) vs a full forward pass;
* one v* gradient step with the model's weights frozen vs with weight gradients on;
* v* with the tokens before the subject cached (``prefix_cache``) vs recomputed at every step;
* v* steps run from the edited layer, unembedding only the scored positions, vs whole forward passes
  (the run's default 20 prefixed contexts);
* an edited model's perplexity on the reference texts from the edited layer vs whole passes.

    OMP_NUM_THREADS=2 python bench/bench_rome.py [--model smollm2-135m] [--layer 6] [--repeats 3]
"""

import argparse
import contextlib

import torch

import interp
from interp.rome.compute_u import compute_keys, key_hook
import interp.rome.compute_v as cv
from interp.rome.collapse import edited_perplexity, reference_perplexity, reference_tails
from interp.rome.compute_v import compute_v
from interp.rome.rome_main import RankOneUpdate, applied_edit
from interp.rome.requests import load_requests, subject_last_position


if __name__ == "__main__":
    from commands import best_of  # this folder is on sys.path when run as a script

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    m = interp.load_model(args.model)
    reqs = load_requests()[:8]
    prefixes = ["Once upon a time there was. ", "The weather today is. ", "In the beginning. ", "My friend said. "]
    toks, pos = [], []
    for r in reqs:
        for c in ["", *prefixes]:
            ids, p = subject_last_position(m, c, r.prompt, r.subject)
            toks.append(ids)
            pos.append([p])
    stop = best_of(lambda: compute_keys(m, reqs, args.layer, prefixes), args.repeats)
    # logits=True forces every block and the unembedding (capture otherwise stops after the last hooked layer)
    full = best_of(lambda: interp.capture(m, toks, hooks=[key_hook(args.layer)], positions=pos, logits=True, progress=False),
                args.repeats)
    print(f"keys: full forward / stop_at_layer={args.layer + 1}: {full / stop:.2f}x  ({full:.3f}s vs {stop:.3f}s)")
    req = reqs[0]
    frozen = best_of(lambda: compute_v(m, req, args.layer, ["", *prefixes], steps=3), args.repeats)

    def unfrozen():
        params = list(m.hf_model.parameters())
        import interp.rome.compute_v as cv

        orig = cv.frozen_weights
        cv.frozen_weights = lambda model: __import__("contextlib").nullcontext()
        try:
            compute_v(m, req, args.layer, ["", *prefixes], steps=3)
        finally:
            cv.frozen_weights = orig
            for p in params:
                p.grad = None

    grads = best_of(unfrozen, args.repeats)
    print(f"v* steps: weight gradients on / frozen weights: {grads / frozen:.2f}x  ({grads:.3f}s vs {frozen:.3f}s)")

    full_v = best_of(lambda: compute_v(m, req, args.layer, ["", *prefixes], steps=3, prefix_cache=False), args.repeats)
    cached_v = best_of(lambda: compute_v(m, req, args.layer, ["", *prefixes], steps=3, prefix_cache=True), args.repeats)
    print(f"v* steps: every token recomputed / tokens before the subject cached: {full_v / cached_v:.2f}x  "
          f"({full_v:.3f}s vs {cached_v:.3f}s)")

    @contextlib.contextmanager
    def whole_passes():
        orig = cv.tail_supported
        cv.tail_supported = lambda model: False
        try:
            yield
        finally:
            cv.tail_supported = orig

    ctx20 = [""] + [f"{p}{i}. " for i in range(5) for p in prefixes]  # 20 prefixed contexts, as the run's default
    resumed = best_of(lambda: compute_v(m, req, args.layer, ctx20, steps=20, early_stop_loss=0), args.repeats)
    with whole_passes():
        whole = best_of(lambda: compute_v(m, req, args.layer, ctx20, steps=20, early_stop_loss=0), args.repeats)
    print(f"v* (20 steps, 20 contexts): whole passes / from layer {args.layer} with scored positions unembedded: "
          f"{whole / resumed:.2f}x  ({whole:.3f}s vs {resumed:.3f}s)")

    ref = reference_perplexity(m, prefixes, 12, 48, 12, 24)
    tails = reference_tails(m, ref, args.layer)
    g = torch.Generator().manual_seed(0)
    up = RankOneUpdate(torch.randn(m.d_model, generator=g), torch.randn(m.d_mlp, generator=g), 1e3, "rome")
    with applied_edit(m, args.layer, up):
        fast = best_of(lambda: [edited_perplexity(m, ref, pre, tails) for pre in (False, True)], args.repeats)
        slow = best_of(lambda: [edited_perplexity(m, ref, pre) for pre in (False, True)], args.repeats)
    print(f"edited perplexity (12 + 12 texts, bare and prefixed): whole passes / from layer {args.layer}: "
          f"{slow / fast:.2f}x  ({slow:.3f}s vs {fast:.3f}s)")
