"""Reading answer log-probabilities, ranks and perplexity from logits: the earlier passes against
``interp.scoring``, as ratios measured in one run.

1. The logit lens's read-out (``interp.recall.logit_lens.readout_answer``): residual vectors of
   Wikipedia text, final norm, unembedding, the answer's probability and rank (the rank was a
   boolean sum, now an in-place ``(z - z_t) > 0``).
2. Perplexity of held-out Wikipedia texts from their logits (what each mitigation candidate's
   perplexity cost measures): the earlier path also averaged the next-token distribution.

Both paths start from the same logits; the numbers they give are compared too.

    python bench/bench_scoring.py [--model gemma-3-270m] [--dtype bfloat16] [--vectors 2048] [--texts 16]
"""

import argparse

import torch

import interp
from interp.corpus import natural_texts
from interp.recall.anti_overconfidence import next_token_stats
from interp.recall.logit_lens import readout_answer


def log_softmax_readout(model, resid, answer_ids, chunk=256):
    """The read-out as it was: log-softmax, gather, exponent, and the rank as a boolean sum."""
    probs, ranks = torch.zeros(len(resid)), torch.zeros(len(resid))
    with torch.no_grad():
        for a in range(0, len(resid), chunk):
            logp = torch.log_softmax(model.unembed(resid[a : a + chunk].to(model.device, model.dtype)).float(), -1)
            t = logp.gather(1, answer_ids[a : a + chunk, None])
            probs[a : a + chunk], ranks[a : a + chunk] = t[:, 0].exp(), (logp > t).sum(-1).float()
    return probs, ranks


if __name__ == "__main__":
    from commands import timed  # this folder is on sys.path when run as a script

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--dtype", default=None, help="e.g. bfloat16 (the mixed policy)")
    ap.add_argument("--vectors", type=int, default=2048, help="residual vectors read out")
    ap.add_argument("--texts", type=int, default=16, help="held-out texts for the perplexity")
    args = ap.parse_args()
    model = interp.load_model(args.model, dtype=args.dtype)
    texts = natural_texts("wikipedia", "heldout")[0][: args.texts]
    hook = model.hook("resid_post", model.n_layers // 2)
    cap = interp.capture(model, texts, hooks=[hook], positions="all", progress=False)
    resid = torch.cat(list(cap.acts[hook]))[: args.vectors].float()
    answers = torch.randint(0, model.d_vocab, (len(resid),), generator=torch.Generator().manual_seed(0))
    t_old, (p_old, r_old) = timed(lambda: log_softmax_readout(model, resid, answers))
    t_new, (p_new, r_new) = timed(lambda: readout_answer(model, resid, answers))
    print(f"logit-lens read-out of {len(resid)} vectors ({model.spec}, {model.precision}): log-softmax {t_old:.2f}s, "
          f"interp.scoring {t_new:.2f}s, x{t_old / t_new:.2f}; largest probability difference "
          f"{float((p_old - p_new).abs().max()):.2e}, ranks equal on {float((r_old == r_new).float().mean()):.4f}")
    t_old, (_, ppl_old, n) = timed(lambda: next_token_stats(model, texts, mean_distribution=True), 1)
    t_new, (_, ppl_new, _) = timed(lambda: next_token_stats(model, texts, mean_distribution=False), 1)
    print(f"perplexity of {len(texts)} texts ({n} tokens): with the mean distribution {t_old:.2f}s, without it "
          f"{t_new:.2f}s, x{t_old / t_new:.2f}; perplexity {ppl_old:.5f} vs {ppl_new:.5f}")
