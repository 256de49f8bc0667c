"""interp: mechanistic-interpretability analyses of causal LMs on TransformerLens.

Quick start::

    import interp
    model = interp.load_model("smollm2-135m")
    acts = interp.capture(model, ["The capital of France is"], hooks=["blocks.20.mlp.hook_post"])
"""

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
