"""interp: mechanistic-interpretability analyses of causal LMs on TransformerLens.

Quick start::

    import interp
    model = interp.load_model("smollm2-135m")
    acts = interp.capture(model, ["The capital of France is"], hooks=["blocks.20.mlp.hook_post"])
"""

import os as _os

# Large CPU tensors (a chunk of logits over a 262k vocabulary is 128 MiB) are allocated and freed
# many times per analysis; backed by 4 KiB pages, each allocation faults its pages in again, which
# cost more than the unembedding product itself (measured: 7.1 -> 4.0 ms per logit-lens row on
# Gemma 3). PyTorch reads this once, at its first allocation; a user's own setting is kept.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from interp.errors import InterpError
from interp.model import Model, load_model, wrap_hf_model
from interp.capture import Captured, capture, current_batch
from interp.generate import greedy_generate
from interp.analyses import run

__version__ = "0.1.0"

__all__ = [
    "InterpError",
    "Model",
    "load_model",
    "wrap_hf_model",
    "Captured",
    "capture",
    "current_batch",
    "greedy_generate",
    "run",
    "__version__",
]
