import pytest
import torch

from interp import gemm
from interp.errors import InterpError

needs_onednn = pytest.mark.skipif(not gemm.onednn_available(), reason="this PyTorch has no working oneDNN linear kernel")


@pytest.fixture
def use(monkeypatch):
    """Set INTERP_CPU_GEMM for one test (the resolved backend is re-read)."""
    def set_backend(name: str) -> None:
        monkeypatch.setenv(gemm.ENV, name)
        gemm._resolve.cache_clear()
    yield set_backend
    gemm._resolve.cache_clear()


@pytest.fixture
def onednn_calls(monkeypatch):
    """Count the products that went through oneDNN."""
    calls = []
    real = gemm._onednn

    def counted(x, w, b):
        calls.append(tuple(x.shape))
        return real(x, w, b)
    monkeypatch.setattr(gemm, "_onednn", counted)
    return calls


@needs_onednn
@pytest.mark.parametrize("shape", [(7, 48), (2, 5, 48), (0, 48)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_onednn_linear_equals_f_linear(use, onednn_calls, shape, with_bias):
    use("onednn")
    w, b = torch.randn(80, 48), torch.randn(80) if with_bias else None
    x = torch.randn(*shape)
    with torch.no_grad():
        got = gemm.linear(x, w, b)
    assert onednn_calls == [shape]
    assert got.shape == (*shape[:-1], 80)
    assert torch.allclose(got, torch.nn.functional.linear(x, w, b), rtol=1e-5, atol=1e-5)
    xt = torch.randn(48, 7).T  # a transposed input
    assert torch.allclose(gemm.linear(xt, w), xt @ w.T, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_products_oneDNN_cannot_take_go_to_pytorch(use, onednn_calls):
    use("onednn")
    w = torch.randn(16, 8)
    x = torch.randn(4, 8, requires_grad=True)
    y = gemm.linear(x, w)  # a gradient is wanted: oneDNN's kernel has no backward
    y.sum().backward()
    assert torch.allclose(x.grad, w.sum(0).expand(4, -1))
    with torch.no_grad():
        gemm.linear(x.detach().bfloat16(), w.bfloat16())  # not float32
        gemm.linear(x.detach(), torch.randn(8, 16).T)  # a transposed weight would be reordered per call
        gemm.linear(x.detach()[0], w)  # a vector
    assert onednn_calls == []
    with torch.no_grad():
        gemm.matmul(x.detach(), w.T)  # [d_in, d_out] as a transposed view of a contiguous weight
    assert onednn_calls == [(4, 8)]


@needs_onednn
def test_blas_backend_never_calls_onednn(use, onednn_calls):
    use("blas")
    with torch.no_grad():
        gemm.linear(torch.randn(3, 8), torch.randn(5, 8))
    assert onednn_calls == []


@pytest.mark.parametrize("vendor,expected", [("GenuineIntel", "blas"), ("AuthenticAMD", "onednn"), ("", "blas")])
def test_auto_takes_onednn_off_intel_only(use, monkeypatch, vendor, expected):
    monkeypatch.setattr(gemm, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(gemm, "onednn_available", lambda: True)
    use("auto")
    assert gemm.backend() == expected


def test_auto_falls_back_and_onednn_refuses_when_the_kernel_fails_its_check(use, monkeypatch):
    monkeypatch.setattr(gemm, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(gemm, "onednn_available", lambda: False)
    use("auto")
    assert gemm.backend() == "blas"
    use("onednn")
    with pytest.raises(InterpError, match="oneDNN"):
        gemm.backend()


def test_a_bad_backend_name_is_a_clear_error(use):
    use("fastest")
    with pytest.raises(InterpError, match="INTERP_CPU_GEMM must be one of auto, onednn, blas"):
        gemm.backend()


@needs_onednn
@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen2", "gpt_neox"])
def test_a_models_linear_layers_run_through_onednn_with_the_same_logits(tiny_models, use, onednn_calls, family):
    m = tiny_models[family]
    layers = [x for x in m.hf_model.modules() if type(x) is torch.nn.Linear]
    assert layers and all("forward" in x.__dict__ for x in layers)  # installed at load
    ids, h = torch.randint(0, m.d_vocab, (2, 6)), torch.randn(3, m.d_model)
    with torch.no_grad():
        use("blas")
        want, want_u = m.bridge(ids), m.unembed(h)
        assert onednn_calls == []
        use("onednn")
        got, got_u = m.bridge(ids), m.unembed(h)
    assert len(onednn_calls) >= 4 * m.n_layers + 1 and (3, m.d_model) in onednn_calls  # attention and MLP layers, and the logit lens
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert torch.allclose(got_u, want_u, rtol=1e-4, atol=1e-4 * float(want_u.abs().max()))


def test_install_leaves_a_replaced_forward_alone():
    lin, other = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    own = lambda x: x  # noqa: E731
    other.forward = own
    assert gemm.install(torch.nn.Sequential(lin, other)) == 1
    assert "forward" in lin.__dict__ and other.forward is own


def test_the_manifest_records_the_cpu_backend(tiny_models, use):
    use("blas")
    assert tiny_models["llama"].describe()["cpu_gemm"] == "blas"
