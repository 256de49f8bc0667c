"""Float32 matrix products on the CPU: the BLAS PyTorch ships, or oneDNN where that BLAS is slow.

PyTorch's CPU build multiplies float32 matrices with Intel's MKL. MKL picks its kernels by CPU
vendor: on a 2-core AMD EPYC (Zen 5, with AVX-512) its products took 1.5-5x as long as oneDNN's
(PyTorch's other CPU backend, which picks kernels by instruction set) on the same shapes and
threads (``bench/bench_gemm.py``): Gemma 3's unembedding of 256 rows (256 x 640 by 640 x 262,144)
732 -> 296 ms (117 -> 290 GFLOP/s), of one row 55 -> 23 ms; its MLP projections of a 3-shot batch
1.9-2.1x; a whole Gemma forward pass 1.57 -> 0.76 s. Both are float32 products that differ only in
summation order: 7e-6 on unembedding logits of magnitude 7, 2.8e-4 on the logits after Gemma's 18
blocks, as two BLAS builds differ; the full recall runs' summaries moved by at most 1.4e-6.

:func:`backend` says which one runs, from ``INTERP_CPU_GEMM``:

* ``auto`` (default): oneDNN on a CPU whose vendor is not Intel, MKL on Intel's own (where MKL
  uses its best kernels), each only after oneDNN's result is checked against MKL's on a small
  product at first use;
* ``onednn`` / ``blas``: that backend, whatever the CPU.

:func:`linear` and :func:`matmul` route one product; :func:`install` makes a model's
``nn.Linear`` layers use :func:`linear`. The backend is recorded in every result's manifest.
Products that need gradients, that are not float32, or that are not on the CPU always go through
PyTorch's own ``F.linear`` (oneDNN's ``_linear_pointwise`` has no autograd kernel).
"""

from __future__ import annotations

import functools
import os
import types
from typing import Optional

import torch

from interp.errors import InterpError

ENV = "INTERP_CPU_GEMM"
BACKENDS = ("auto", "onednn", "blas")


@functools.lru_cache(maxsize=1)
def cpuinfo() -> dict[str, str]:
    """The first processor's fields in ``/proc/cpuinfo`` (``vendor_id``, ``model name``, ``flags``, ...;
    empty where there is no such file)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_vendor() -> str:
    """The CPU vendor as ``/proc/cpuinfo`` names it (``GenuineIntel``, ``AuthenticAMD``; "" if unknown)."""
    return cpuinfo().get("vendor_id", "")


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@functools.lru_cache(maxsize=1)
def onednn_available() -> bool:
    """Whether this PyTorch has oneDNN's linear kernel and it agrees with ``F.linear`` on a small product
    (checked once per process)."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=g) for s in ((3, 5, 64), (96, 64), (96,)))
    try:
        with torch.no_grad():
            got = _onednn(x, w, b)
    except (RuntimeError, NotImplementedError):
        return False
    want = torch.nn.functional.linear(x, w, b)
    return got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-5, atol=1e-5))


@functools.lru_cache(maxsize=None)
def _resolve(choice: str) -> str:
    if choice not in BACKENDS:
        raise InterpError(f"{ENV} must be one of {', '.join(BACKENDS)}, not {choice!r}")
    if choice == "blas":
        return "blas"
    ok = onednn_available()
    if choice == "onednn":
        if not ok:
            raise InterpError(f"{ENV}=onednn, but this PyTorch's oneDNN linear kernel is missing or disagrees with F.linear")
        return "onednn"
    return "onednn" if ok and cpu_vendor() not in ("GenuineIntel", "") else "blas"


def backend() -> str:
    """The backend of float32 CPU products in this process: ``onednn`` or ``blas`` (see module docstring).

    Raises:
        InterpError: for an ``INTERP_CPU_GEMM`` that is not a backend, or ``onednn`` where it fails its check.
    """
    return _resolve(os.environ.get(ENV, "auto").strip().lower() or "auto")


def _fast(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32 or x.dim() < 2 or weight.dim() != 2:
        return False
    if not weight.is_contiguous():  # oneDNN would reorder it on every call; the BLAS reads either layout
        return False
    if bias is not None and bias.dtype != torch.float32:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        return False
    return backend() == "onednn"


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN where :func:`backend` says so and no gradient is needed."""
    if _fast(x, weight, bias):
        return _onednn(x, weight, bias)
    return torch.nn.functional.linear(x, weight, bias)


def matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w`` for a matrix ``w`` (``[d_in, d_out]``), through :func:`linear`."""
    if w.dim() != 2:
        return x @ w
    return linear(x, w.mT)


def _linear_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, self.weight, self.bias)


def install(module: torch.nn.Module) -> int:
    """Make every plain ``nn.Linear`` in ``module`` multiply through :func:`linear` (in place; layers
    whose ``forward`` was already replaced, such as mixed precision's projections, are left alone).
    Returns how many layers now do."""
    n = 0
    for m in module.modules():
        if type(m) is torch.nn.Linear and "forward" not in m.__dict__:
            m.forward = types.MethodType(_linear_forward, m)  # bound: a deep copy binds to the copy
            n += 1
    return n
