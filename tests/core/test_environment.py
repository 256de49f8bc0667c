import os
import subprocess
import sys

import pytest
import torch


@pytest.mark.parametrize("preset,expected", [(None, "1"), ("0", "0")])
def test_importing_interp_asks_for_huge_pages_unless_the_user_chose(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if preset is not None:
        env["THP_MEM_ALLOC_ENABLE"] = preset
    out = subprocess.run([sys.executable, "-c", "import os, interp; print(os.environ['THP_MEM_ALLOC_ENABLE'])"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_unembed_adds_a_nonzero_bias_and_skips_a_zero_one(tiny_models, monkeypatch):
    m = tiny_models["llama"]
    h = torch.randn(3, m.d_model)
    with torch.no_grad():
        plain = m.unembed(h, normalize=False)
        assert torch.allclose(plain, h @ m.W_U, atol=1e-5)
        bias = torch.linspace(-1, 1, m.d_vocab)
        monkeypatch.setattr(type(m), "b_U", property(lambda self: bias))
        assert torch.allclose(m.unembed(h, normalize=False) - plain, bias.expand(3, -1), atol=1e-5)
