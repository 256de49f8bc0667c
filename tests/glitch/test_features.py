import numpy as np
import pytest

from interp import InterpError, capture
from interp.glitch.features import glitch_features
from interp.glitch.oracle import repeat_template


def test_features_every_family(tiny):
    ids = [tiny.encode(c, prepend_bos=False)[0] for c in "abcdefg"]
    tpl = repeat_template(tiny, shots=())
    f = glitch_features(tiny, ids, [0, 2], batch_size=3, template=tpl)
    P = len(tpl.prefix_ids)
    assert f.layers == [0, 2]
    assert f.blocks[(0, "pattern")].shape == (7, tiny.n_heads * (P + 1))
    assert f.blocks[(2, "mlp_gate")].shape == (7, tiny.d_mlp)
    assert ((2, "mlp_data") in f.blocks) == tiny.gated_mlp
    assert f.matrix().shape[0] == 7
    assert np.allclose(f.blocks[(0, "pattern")].reshape(7, tiny.n_heads, P + 1).sum(-1), 1, atol=1e-4)


def test_features_equal_unshared_run(tiny_models):
    m = tiny_models["llama"]
    tpl = repeat_template(m, shots=("hi",))
    ids = [m.encode(c, prepend_bos=False)[0] for c in "xyz"]
    for position in ("token", "last"):
        f = glitch_features(m, ids, [1], position=position, template=tpl)
        rows = [list(tpl.prefix_ids) + ([t] if position == "token" else tpl.row(t)) for t in ids]
        cap = capture(m, rows, hooks=["blocks.1.mlp.hook_pre", "blocks.1.attn.hook_pattern"], positions="last")
        assert np.allclose(f.blocks[(1, "mlp_gate")], cap.acts["blocks.1.mlp.hook_pre"].float().numpy(), atol=1e-4)
        pat = cap.acts["blocks.1.attn.hook_pattern"].float().numpy()[..., : len(rows[0])].reshape(3, -1)
        assert np.allclose(f.blocks[(1, "pattern")], pat, atol=1e-5)


def test_features_reject_bad_input(tiny_models):
    m = tiny_models["gpt2"]
    with pytest.raises(InterpError):
        glitch_features(m, [1, 2], [5], template=repeat_template(m, shots=()))
    with pytest.raises(InterpError):
        glitch_features(m, [1, 2], [0], position="middle", template=repeat_template(m, shots=()))
    with pytest.raises(InterpError):
        glitch_features(m, [1], [0], kinds=["mlp_post"], template=repeat_template(m, shots=()))
    with pytest.raises(InterpError):
        repeat_template(m, shots=("a long example string",) * 8)
