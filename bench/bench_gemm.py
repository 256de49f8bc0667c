"""Float32 CPU products through PyTorch's BLAS (MKL) and through oneDNN; prints both and their ratio.

The shapes are the three families' own: each unembedding (d_model x d_vocab) for 1, 32 and 256
rows, and one MLP projection of a 3-shot batch. With ``--model`` it also times a forward pass of
32 prompts of 24 tokens (last position's logits) under each backend (``INTERP_CPU_GEMM``), and the
largest logit difference between them.

Run: python bench/bench_gemm.py [--repeats 3] [--model gemma-3-270m]
"""

from __future__ import annotations

import argparse
import os

import torch

from interp import gemm

SHAPES = {  # name: (d_in, d_out)
    "smollm2 unembedding": (576, 49152),
    "gemma3 unembedding": (640, 262144),
    "qwen2.5 unembedding": (896, 151936),
    "gemma3 MLP in": (640, 2048),
    "gemma3 MLP out": (2048, 640),
}


def products(repeats: int) -> None:
    from commands import best_of  # this folder is on sys.path when run as a script

    print(f"{'product':34s} {'BLAS ms':>9s} {'oneDNN ms':>10s} {'ratio':>6s} {'GFLOP/s':>15s}")
    for name, (k, n) in SHAPES.items():
        w = torch.randn(n, k) * 0.05
        for m in ((1, 32, 256) if n > 10000 else (32 * 24,)):
            x = torch.randn(m, k)
            with torch.no_grad():
                a = best_of(lambda: torch.nn.functional.linear(x, w), repeats)
                b = best_of(lambda: gemm._onednn(x, w, None), repeats)
            fl = 2 * m * k * n / 1e9
            print(f"{name + f' ({m} rows)':34s} {a * 1e3:9.1f} {b * 1e3:10.1f} {a / b:6.2f} {fl / a:7.0f} {fl / b:7.0f}")


def forward(spec: str, repeats: int) -> None:
    import interp
    from commands import best_of

    model = interp.load_model(spec, device="cpu")
    ids = torch.randint(1000, 5000, (32, 24))
    out, times = {}, {}
    for be in ("blas", "onednn"):
        os.environ[gemm.ENV] = be
        with torch.no_grad():
            times[be] = best_of(lambda: model.bridge(ids, logits_to_keep=1), repeats)
            out[be] = model.bridge(ids, logits_to_keep=1)
    diff = float((out["blas"] - out["onednn"]).abs().max())
    print(f"{spec} forward, 32 x 24 tokens: BLAS {times['blas']:.2f} s, oneDNN {times['onednn']:.2f} s, "
          f"ratio {times['blas'] / times['onednn']:.2f}; largest logit difference {diff:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None, help="also time a forward pass of this model under each backend")
    args = ap.parse_args()
    if not gemm.onednn_available():
        raise SystemExit("this PyTorch has no working oneDNN linear kernel")
    print(f"torch threads: {torch.get_num_threads()}; CPU vendor: {gemm.cpu_vendor() or 'unknown'}; "
          f"auto backend here: {gemm.backend()}")
    products(args.repeats)
    if args.model:
        forward(args.model, args.repeats)


if __name__ == "__main__":
    main()
