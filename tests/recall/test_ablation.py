import pytest
import torch

import interp
from interp.errors import InterpError
from interp.recall import ablate_heads, parse_heads


def test_parse_heads(tiny_models):
    m = tiny_models["llama"]
    assert parse_heads(m, "2.1, 0.3") == [(2, 1), (0, 3)]
    assert parse_heads(m, ["-1.0", (1, 2)]) == [(2, 0), (1, 2)]
    for bad, msg in (("2-1", "LAYER.HEAD"), ("9.0", "layer out of range"), ("1.7", "head out of range"), ("", "no heads")):
        with pytest.raises(InterpError, match=msg):
            parse_heads(m, bad)


def test_zero_ablation_matches_manual_hook_and_is_removed(tiny):
    prompts = ["The capital of France is", "Hi"]
    base = interp.capture(tiny, prompts, logits=True).logits

    def manual(z, hook):
        z = z.clone()
        z[:, :, 1] = 0
        return z

    with tiny.hooks([(tiny.hook("z", 1), manual)]):
        ref = interp.capture(tiny, prompts, logits=True).logits
    with ablate_heads(tiny, "1.1"):
        got = interp.capture(tiny, prompts, logits=True).logits
    assert torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-4)
    after = interp.capture(tiny, prompts, logits=True).logits
    assert torch.allclose(after, base, atol=1e-6)


def test_last_position_ablation_in_padded_batch_equals_single_runs(tiny_models):
    m = tiny_models["llama"]
    prompts = ["The capital of France is", "Hello", "A longer prompt than the others here"]
    means = {2: torch.randn(len(prompts), m.n_heads, m.d_head)}
    with ablate_heads(m, "2.0,2.3", mode="mean", means=means, positions="last"):
        batched = interp.capture(m, prompts, logits=True, batch_size=3).logits
    for i, p in enumerate(prompts):
        with ablate_heads(m, "2.0,2.3", mode="mean", means={2: means[2][i]}, positions="last"):
            single = interp.capture(m, [p], logits=True).logits[0]
        assert torch.allclose(batched[i], single, atol=1e-4)


def test_scale_one_is_identity_and_generation_runs(tiny_models):
    m = tiny_models["gpt2"]
    prompts = ["The capital of France is"]
    base = interp.greedy_generate(m, prompts, max_new_tokens=4)
    with ablate_heads(m, "2.0,2.1,2.2,2.3", mode="scale", scale=1.0):
        same = interp.greedy_generate(m, prompts, max_new_tokens=4)
    assert same == base
    with ablate_heads(m, "2.0,2.1,2.2,2.3", positions="last"):
        out = interp.greedy_generate(m, prompts, max_new_tokens=4)
    assert len(out[0]) == 4


def test_bad_modes(tiny_models):
    m = tiny_models["llama"]
    with pytest.raises(InterpError, match="mode"):
        with ablate_heads(m, "1.0", mode="delete"):
            pass
    with pytest.raises(InterpError, match="needs means"):
        with ablate_heads(m, "1.0", mode="mean"):
            pass


def test_bridge_generate_sees_the_ablation(tiny_models):
    m = tiny_models["llama"]
    toks = m.to_tokens("The capital of France is")
    kw = dict(max_new_tokens=1, do_sample=False, verbose=False, return_type="tokens")
    heads = "1.0,1.1,1.2,1.3,2.0,2.1,2.2,2.3"
    base_next = int(m.forward(toks)[0, -1].argmax())
    with ablate_heads(m, heads, mode="scale", scale=-4.0):
        ablated_next = int(m.forward(toks)[0, -1].argmax())
        generated = m.bridge.generate(toks, **kw)
    assert ablated_next != base_next
    assert int(generated[0, -1]) == ablated_next
    assert int(m.bridge.generate(toks, **kw)[0, -1]) == base_next


def test_auto_heads_belong_to_the_mitigation(tiny_models):
    m = tiny_models["gemma3"]
    with pytest.raises(InterpError, match="mitigate"):
        with ablate_heads(m, "auto"):
            pass


def test_ablation_does_not_import_the_cli_or_the_mitigation():
    import ast
    from pathlib import Path

    import interp.recall.ablation as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(n and n.startswith("interp.recall") for n in names), names
