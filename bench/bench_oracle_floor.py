"""Benchmark: the exhaustive repeat oracle's cost per token against the forward passes it needs.

The oracle (:func:`interp.glitch.oracle.repeat_oracle`) runs the prompt's shared part once, then for
each batch a pass over every row's token-specific tokens (the token and the rest of the prompt) on
the cached prefix, and one pass per generated token until each row's outcome is decided. The work
it cannot avoid is the model's forward pass over exactly those tokens: the row and the reply it
generated. The floor is that pass done in one batched, teacher-forced forward on the same prefix
cache (the replies are the oracle's own), timed two ways: logits read at the last position only
(which leaves out the unembedding of the reply positions: a lower bound) and logits at every
token-specific position (which adds unembeddings the oracle does not need: an upper bound). The
ratio oracle / floor says how much the generation loop costs beyond the arithmetic (target: within
2x).

    OMP_NUM_THREADS=1 python bench/bench_oracle_floor.py --n 256 [--model smollm2-135m] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import interp
from interp.capture import capture
from interp.glitch.oracle import repeat_oracle, repeat_template, token_classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=256, help="random candidate tokens")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = interp.load_model(a.model)
    tpl = repeat_template(model)
    rng = np.random.default_rng(a.seed)
    ids = rng.choice(model.d_vocab, size=min(model.d_vocab, 2 * a.n), replace=False).tolist()
    cand = [t for t, c in zip(ids, token_classes(model, ids)) if c is None][: a.n]
    tok = model.tokenizer
    repeat_oracle(model, cand[:8], template=tpl, batch_size=a.batch_size, progress=False)  # warm up

    t0 = time.perf_counter()
    res = repeat_oracle(model, cand, template=tpl, batch_size=a.batch_size, progress=False)
    oracle_s = time.perf_counter() - t0
    replies = [tok.encode(g, add_special_tokens=False) if g else [] for g in res.table.generated]
    # the oracle's own reply ids (re-encoding can differ by a token; the count is what matters)
    rows = [tpl.row(t) + r[: max(0, int(n) - 1)] for t, r, n in zip(cand, replies, res.table.n_new)]
    n_new = res.table.n_new.to_numpy()

    def floor(positions) -> float:
        t0 = time.perf_counter()
        capture(model, rows, hooks=[], positions=positions, prefix=list(tpl.prefix_ids), logits=True,
                batch_size=a.batch_size, progress=False)
        return time.perf_counter() - t0

    lo = floor("last")
    hi = floor("all")
    n_tok = sum(len(r) for r in rows)
    print(f"model {a.model}; {len(cand)} random candidates; prompt prefix {len(tpl.prefix_ids)} tokens (cached), "
          f"token-specific part {len(tpl.suffix_ids) + 1} tokens, mean reply {n_new.mean():.2f} tokens "
          f"({(n_new < 10).mean():.0%} of rows stopped early); {n_tok} token-specific positions in all")
    print(f"oracle:                      {oracle_s:7.2f}s  = {oracle_s / len(cand) * 1e3:6.2f} ms/token")
    print(f"floor, logits at last only:  {lo:7.2f}s  = {lo / len(cand) * 1e3:6.2f} ms/token   ratio oracle/floor {oracle_s / lo:.2f}x")
    print(f"floor, logits everywhere:    {hi:7.2f}s  = {hi / len(cand) * 1e3:6.2f} ms/token   ratio oracle/floor {oracle_s / hi:.2f}x")
    print("target: oracle within 2x of the floor")


if __name__ == "__main__":
    main()
