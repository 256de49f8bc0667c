import torch

from interp.recall.attribution import component_logits, direct_logit_attribution, final_norm_linear


def test_frozen_norm_components_add_up_to_the_norm(tiny):
    fn = final_norm_linear(tiny)
    g = torch.Generator().manual_seed(1)
    parts = torch.randn(5, 4, tiny.d_model, generator=g)
    x = parts.sum(1)
    s = fn.scale(x)
    total = fn.apply_frozen(parts, s[:, None]).sum(1) + fn.b
    with torch.no_grad():
        ref = tiny.final_norm(x.to(tiny.dtype)).float()
    assert torch.allclose(total, ref, atol=1e-4, rtol=1e-4)


def test_dla_sums_to_logits(smollm):
    g = torch.Generator().manual_seed(0)
    parts = torch.randn(3, 6, smollm.d_model, generator=g)
    x = parts.sum(1)
    tok = torch.tensor([100, 2000, 30000])
    dla = direct_logit_attribution(smollm, parts, x, tok)
    with torch.no_grad():
        logits = smollm.unembed(x).float()
    fn = final_norm_linear(smollm)
    bias = (fn.b @ smollm.W_U.detach().float()) + smollm.b_U.float()
    assert torch.allclose(dla.sum(1) + bias[tok], logits[torch.arange(3), tok], atol=1e-3)
    full = component_logits(smollm, parts[0], fn.scale(x[:1]).expand(6))
    assert torch.allclose(full[:, tok[0]], dla[0], atol=1e-4)


def test_component_logits_read_a_low_precision_unembedding_through_one_float32_copy():
    """Under the mixed bf16 policy W_U is bf16: vocabulary-wide logits use one float32 copy, made
    again only when the weight changes."""
    from interp.recall.attribution import unembed_float32
    from interp.testing import tiny_model

    ref = tiny_model("gemma3")
    assert unembed_float32(ref).data_ptr() == ref.W_U.data_ptr(), "float32 on the CPU: no copy"
    m = tiny_model("gemma3", dtype=torch.bfloat16, precision="mixed")
    assert m.W_U.dtype == torch.bfloat16
    w = unembed_float32(m)
    assert w.dtype == torch.float32 and torch.equal(w, m.W_U.float())
    assert unembed_float32(m) is w, "kept between calls"
    c = torch.randn(2, m.d_model)
    assert torch.allclose(component_logits(m, c, torch.ones(2)),
                          final_norm_linear(m).apply_frozen(c, torch.ones(2)) @ m.W_U.float())
    with torch.no_grad():
        m.bridge.unembed.original_component.weight.mul_(2)
    w2 = unembed_float32(m)
    assert w2 is not w and torch.equal(w2, m.W_U.float()), "an edited weight is read again"
