"""Benchmark: GlitchProber pipeline vs exhaustive oracle search, measured in one run.

On a random subset of the vocabulary, runs (1) the exhaustive repeat oracle over every candidate,
(2) the whole GlitchProber pipeline with the real oracle (labelling + features + training +
prediction + verification) and (3) the same PCA + SVM on token statistics (no forward pass),
trained on GlitchProber's labelled sample and verified with the real oracle, and prints wall-time
and CPU-time ratios, recall/precision/F1 against the exhaustive labels of this run, and where the
pipeline's time goes. CPU time (this process
only) is printed beside wall time because the machine is shared.

    OMP_NUM_THREADS=1 python bench/bench_glitch.py --n 2048 [--sample-ratio 0.1] [--threshold 0.0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import interp
from interp.glitch.baselines import statistics_detector
from interp.glitch.detect import glitch_prober, precision_recall
from interp.glitch.oracle import repeat_oracle, repeat_template, token_classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=2048, help="vocabulary subset size")
    ap.add_argument("--sample-ratio", type=float, default=0.1)
    ap.add_argument("--threshold", type=float, default=0.0, help="SVM decision threshold")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    model = interp.load_model(a.model)
    tpl = repeat_template(model)
    rng = np.random.default_rng(a.seed)
    ids = np.sort(rng.choice(model.d_vocab, size=a.n, replace=False)).tolist()
    cand = [t for t, c in zip(ids, token_classes(model, ids)) if c is None]

    w0, c0 = time.perf_counter(), time.process_time()
    ex = repeat_oracle(model, cand, template=tpl, batch_size=128, progress=False)
    ex_wall, ex_cpu = time.perf_counter() - w0, time.process_time() - c0
    truth = ex.glitch_ids

    w0, c0 = time.perf_counter(), time.process_time()
    det = glitch_prober(model, ids, sample_ratio=a.sample_ratio, decision_threshold=a.threshold, template=tpl,
                        seed=a.seed, progress=False)
    gp_wall, gp_cpu = time.perf_counter() - w0, time.process_time() - c0
    s = precision_recall(det.glitch_ids, truth)

    print(f"model {a.model}; subset {a.n} ids, {len(cand)} judged candidates, {len(truth)} glitch "
          f"(prevalence {len(truth) / len(cand):.3f}); key layers {det.key_layers}")
    print(f"exhaustive oracle:   wall {ex_wall:8.1f}s  cpu {ex_cpu:8.1f}s  ({ex_wall / len(cand) * 1e3:.1f} ms/token wall)")
    print(f"GlitchProber total:  wall {gp_wall:8.1f}s  cpu {gp_cpu:8.1f}s")
    print(f"ratio pipeline/exhaustive: wall {gp_wall / ex_wall:.3f}  cpu {gp_cpu / ex_cpu:.3f}  (target <= 0.15)")
    print(f"precision {s['precision']:.3f}  recall {s['recall']:.3f}  f1 {s['f1']:.3f}  (target recall >= 0.8)")
    for k, v in det.timings.items():
        print(f"  stage {k:16s} {v:8.1f}s wall  = {v / ex_wall:.3f} x exhaustive")
    n_oracle = int(det.table.in_sample.sum() + det.table.predicted.sum())
    print(f"oracle calls: {n_oracle} = {n_oracle / len(cand):.3f} x exhaustive; "
          f"lower bound on the ratio from verification alone: recall x prevalence = {s['recall'] * len(truth) / len(cand):.3f}")
    t = det.table
    samp = t.in_sample.to_numpy()
    w0 = time.perf_counter()
    st = statistics_detector(model, t.token_id.tolist(), samp, (t.oracle[samp] == "glitch").to_numpy(),
                             lambda ids: repeat_oracle(model, ids, template=tpl, batch_size=128, progress=False).table.cls.tolist(),
                             decision_threshold=a.threshold, seed=a.seed)
    st_wall = time.perf_counter() - w0 + det.timings["labelling"]
    ss = precision_recall(st["found"], truth)
    print(f"token statistics + SVM (same sample, real oracle): wall {st_wall:8.1f}s  ratio {st_wall / ex_wall:.3f}  "
          f"recall {ss['recall']:.3f}  f1 {ss['f1']:.3f}  (features {st['seconds']['features']:.2f}s, "
          f"verification {st['seconds']['verification']:.1f}s)")
    feat_per_tok = det.timings["features"] / len(cand)
    print(f"scaling: oracle {ex_wall / len(cand) * 1e3:.1f} ms/token, features {feat_per_tok * 1e3:.1f} ms/token; both linear in "
          f"vocabulary size, so at {model.d_vocab} tokens: exhaustive ~{ex_wall / len(cand) * model.d_vocab / 60:.0f} min, "
          f"pipeline ~{gp_wall / len(cand) * model.d_vocab / 60:.0f} min")


if __name__ == "__main__":
    main()
