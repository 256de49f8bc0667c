"""Shared fixtures: every RNG fixed; the embedded model loaded once per session."""

import random

import numpy as np
import pytest
import torch

import interp
from interp.testing import TINY_FAMILIES, tiny_model


@pytest.fixture(autouse=True)
def _fixed_seeds():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def smollm():
    """The embedded SmolLM2-135M-Instruct (real weights), on CPU."""
    return interp.load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session", params=TINY_FAMILIES)
def tiny(request):
    """A tiny random model of each family in turn."""
    return tiny_model(request.param)


@pytest.fixture(scope="session")
def tiny_models():
    """All tiny family models, by family name."""
    return {f: tiny_model(f) for f in TINY_FAMILIES}


def _real(name: str):
    from interp import loading
    from interp.errors import InterpError

    try:
        loading.resolve(name)
    except InterpError as e:  # the model's packages are not installed here
        pytest.skip(str(e))
    return interp.load_model(name, device="cpu")


@pytest.fixture(scope="session")
def gemma():
    """Gemma 3 270M (base; real weights from the verified GGUF parts), on CPU."""
    return _real("gemma-3-270m")


@pytest.fixture(scope="session")
def qwen():
    """Qwen2.5-Coder-0.5B-Instruct (real weights from the verified GGUF chunks), on CPU."""
    return _real("qwen2.5-coder-0.5b")
