"""Cost model: measured per-token costs on this machine, projected wall time for the papers' models.

    python bench/cost_model.py [--model smollm2-135m] [--gpu-tflops 989] [--markdown]

1. Measures, on the model given (default the embedded SmolLM2), the seconds per token of the three
   kinds of work the analyses do: a batched forward pass that keeps activations (capture: recall's
   activation pass, the glitch features, ROME's key statistics), greedy generation with a KV cache
   (the repeat oracle), and a forward + backward pass (ROME's v* optimisation). From them it
   reports the FLOP rate this machine reached (2 N FLOPs per token forward, 6 N forward + backward,
   N = the parameters touched per token, the unembedding included).
2. Counts the tokens each stage processes at the papers' sizes: the repeat oracle and the features
   over the whole vocabulary (GlitchProber), the key second moment over 10^5 Wikipedia texts of
   128 tokens (ROME's ``mom2_n_samples``), v* for each of 147 requests (20 steps, 21 contexts), and
   recall's capture of 354 facts x 10 lead-ins x (zero- and 3-shot).
3. Projects the wall time of each stage on the papers' models: on this CPU (at the measured FLOP
   rate) and on 1, 8 and 64 GPUs at ``--gpu-tflops`` (bf16 dense peak; default an H100's 989) times
   an assumed utilisation per kind of work (:data:`GPU_UTILISATION`). Sharded stages (vocabulary
   scans, key statistics, recall capture, ROME's edits; :mod:`interp.distributed`) divide by the
   GPU count and pay one model load per rank; the recall mitigation is not sharded.

The GPU columns are a model, not a measurement: no GPU was measured by this script unless
``--device cuda`` is given, in which case the measured GPU rate replaces the assumption.
"""

from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import torch

# the papers' models: parameters (billions, embeddings excluded), d_model, vocabulary, layers
PAPER_MODELS = {
    "GPT-2-XL": (1.48, 1600, 50257, 48),
    "GPT-J-6B": (5.84, 4096, 50400, 28),
    "OPT-1.3B": (1.21, 2048, 50272, 24),
    "Llama-2-7B": (6.48, 4096, 32000, 32),
    "Qwen-7B": (6.53, 4096, 151936, 32),
    "Gemma-2B": (1.98, 2048, 256000, 18),
}

# share of peak bf16 FLOP/s assumed reached on a GPU, per kind of work
GPU_UTILISATION = {"forward": 0.40, "generate": 0.08, "train": 0.30}

LOAD_SECONDS_PER_GB = 1.0  # model load per rank (safetensors from local NVMe), per GB of bf16 weights


class Stage(NamedTuple):
    name: str
    kind: str  # forward / generate / train
    sharded: bool

    def tokens(self, vocab: int, n_layers: int) -> float:
        """Tokens this stage runs through the model at the papers' sizes."""
        if self.name == "glitch oracle (whole vocabulary)":
            return vocab * (1 + 8 + 10)  # the token, the template's suffix (~8), 10 generated
        if self.name == "glitch features (whole vocabulary)":
            return vocab * 9 * 0.5  # one pass over the prompt, stopped half way (the chosen layers)
        if self.name == "ROME key statistics (1e5 texts)":
            return 1e5 * 128 * 0.25  # stops after the edited layer (~a quarter of the depth)
        if self.name == "ROME v* (147 requests)":
            return 147 * 20 * 21 * 16  # steps x contexts x tokens per context
        if self.name == "recall capture (354 facts x 10 lead-ins)":
            return 354 * 10 * (12 + 48)  # zero-shot (~12 tokens) and 3-shot (~48) prompts
        raise KeyError(self.name)


STAGES = [
    Stage("glitch oracle (whole vocabulary)", "generate", True),
    Stage("glitch features (whole vocabulary)", "forward", True),
    Stage("ROME key statistics (1e5 texts)", "forward", True),
    Stage("ROME v* (147 requests)", "train", True),  # the edits are dealt to the ranks (one request each)
    Stage("recall capture (354 facts x 10 lead-ins)", "forward", True),
]


def measure(model, batch: int = 16, length: int = 64, reps: int = 3) -> dict[str, float]:
    """Seconds per token of a capture forward, greedy generation and forward + backward on ``model``."""
    from interp.capture import capture
    from interp.generate import greedy_generate

    dev = model.device
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, min(model.d_vocab, 20000), (batch, length), generator=g).tolist()
    out: dict[str, float] = {}
    capture(model, ids[:2], hooks=[model.hook("resid_post", 0)], positions="last", batch_size=batch, progress=False)
    t = time.perf_counter()
    for _ in range(reps):
        capture(model, ids, hooks=[model.hook("resid_post", model.n_layers - 1)], positions="last", batch_size=batch,
                progress=False, logits=True)
    out["forward"] = (time.perf_counter() - t) / (reps * batch * length)
    new = 10
    t = time.perf_counter()
    greedy_generate(model, [x[:16] for x in ids], max_new_tokens=new, batch_size=batch, stop_at_eos=False, progress=False)
    out["generate"] = (time.perf_counter() - t) / (batch * (16 + new))
    toks = torch.tensor(ids, device=dev)
    params = list(model.bridge.parameters())
    before = [q.requires_grad for q in params]
    for q in params:
        q.requires_grad_(True)
    try:
        t = time.perf_counter()
        for _ in range(reps):
            logits = model.bridge(toks)
            logits.float().logsumexp(-1).mean().backward()
        out["train"] = (time.perf_counter() - t) / (reps * batch * length)
    finally:
        model.bridge.zero_grad(set_to_none=True)
        for q, r in zip(params, before):
            q.requires_grad_(r)
    return out


def fmt(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--gpu-tflops", type=float, default=989.0, help="peak bf16 dense TFLOP/s of one GPU")
    ap.add_argument("--markdown", action="store_true", help="print the projection as a Markdown table")
    a = ap.parse_args()
    from interp.model import load_model

    model = load_model(a.model, device=a.device, dtype=a.dtype)
    hf = model.hf_model
    tied = hf.get_output_embeddings() is not None and \
        hf.get_output_embeddings().weight.data_ptr() == hf.get_input_embeddings().weight.data_ptr()
    # parameters touched per token: all but the embedding lookup (a tied matrix is counted once, as the unembedding)
    n_params = sum(p.numel() for p in hf.parameters()) - (0 if tied else model.d_vocab * model.d_model)
    sec = measure(model)
    flops = {"forward": 2 * n_params, "generate": 2 * n_params, "train": 6 * n_params}
    rate = {k: flops[k] / sec[k] for k in sec}  # FLOP/s reached here
    print(f"measured on {a.model} ({n_params / 1e6:.0f}M parameters per token, {a.device}, {a.dtype}, "
          f"{torch.get_num_threads()} threads):")
    for k in sec:
        print(f"  {k:<9} {sec[k] * 1e3:.2f} ms/token  ({1 / sec[k]:.0f} tokens/s, {rate[k] / 1e9:.1f} GFLOP/s)")
    gpu = {k: a.gpu_tflops * 1e12 * u for k, u in GPU_UTILISATION.items()}
    if a.device.startswith("cuda"):
        gpu = rate  # measured on the GPU at hand
    header = ["model", "stage", "tokens", "this CPU", "1 GPU", "8 GPUs", "64 GPUs"]
    rows = []
    for name, (b, d, V, L) in PAPER_MODELS.items():
        n = b * 1e9 + d * V  # the unembedding is applied to every token here
        load = 2 * n / 1e9 * LOAD_SECONDS_PER_GB
        for st in STAGES:
            tok = st.tokens(V, L)
            f = tok * (6 if st.kind == "train" else 2) * n
            cpu = f / rate[st.kind]
            one = f / gpu[st.kind]
            many = [(one / g if st.sharded else one) + load for g in (8, 64)]
            rows.append([name, st.name, f"{tok:.3g}", fmt(cpu), fmt(one + load), fmt(many[0]), fmt(many[1])])
    if a.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        w = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        for r in [header] + rows:
            print("  ".join(str(x).ljust(w[i]) for i, x in enumerate(r)))
    print(f"assumed GPU: {a.gpu_tflops:g} TFLOP/s peak x utilisation {GPU_UTILISATION}; "
          f"model load {LOAD_SECONDS_PER_GB:g} s/GB per rank")


if __name__ == "__main__":
    main()
