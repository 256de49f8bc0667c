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
