import pytest
import torch

import interp
from interp.errors import InterpError
from interp.rome.compute_u import compute_keys, generate_prefixes, key_hook, sample_top_k
from interp.rome.requests import EditRequest, subject_last_position

REQ = [
    EditRequest(0, "r", "{} is in", "Abc", " x", " y"),
    EditRequest(1, "r", "The home of {} is", "Qrs", " x", " y"),
]


def test_prefixes_are_seeded_and_sized(tiny_models):
    m = tiny_models["llama"]
    a = generate_prefixes(m, ((3, 2), (5, 2)), seed=1)
    b = generate_prefixes(m, ((3, 2), (5, 2)), seed=1)
    c = generate_prefixes(m, ((3, 2), (5, 2)), seed=2)
    assert a == b and a != c and len(a) == 4
    assert all(p.endswith(". ") and "{" not in p for p in a)
    assert [p.split()[0][:3] for p in a] == ["The", "The", "The", "The"] or all(
        p.startswith(s) for p, s in zip(a, ["The", "Therefore", "The", "Therefore"]))
    with pytest.raises(InterpError):
        generate_prefixes(m, ((1, 2),))
    with pytest.raises(InterpError):
        generate_prefixes(m, ((5, 0),))


def test_sampling_draws_only_from_the_top_k(tiny_models):
    m = tiny_models["llama"]
    g = torch.Generator().manual_seed(0)
    seqs = sample_top_k(m, ["The", "The", "You"], 6, top_k=2, generator=g)
    start = len(m.encode("The", prepend_bos=False))
    assert all(len(s) == 6 for s in seqs)
    bos = [m.bos_token_id] if m.prepend_bos else []
    for s in seqs:
        for t in range(start, 6):
            with torch.no_grad():
                logits = m.bridge(torch.tensor([bos + s[:t]]))[0, -1]
            assert s[t] in logits.topk(2).indices.tolist()
    greedy = sample_top_k(m, ["The"], 6, top_k=1)
    assert greedy[0][start:] == interp.greedy_generate(m, ["The"], max_new_tokens=6 - start, stop_at_eos=False)[0]


def _out_input(model, layer, ids, pos):
    """The MLP output matrix's input, read with a plain PyTorch hook on the HF module."""
    mod = model.bridge.blocks[layer].mlp.out
    mod = getattr(mod, "original_component", mod)
    got = {}
    h = mod.register_forward_hook(lambda m, i, o: got.update(k=i[0].detach(), v=o.detach()))
    with torch.no_grad():
        model.hf_model(torch.tensor([ids]))
    h.remove()
    k, v = (got[n].reshape(len(ids), -1) for n in ("k", "v"))  # OPT runs its MLP on flattened tokens
    return k[pos], v[pos]


def test_keys_are_the_output_matrix_input(tiny):
    layer = 1
    prefixes = ["Hello there. ", "A b c. "]
    keys = compute_keys(tiny, REQ, layer, prefixes)
    assert keys.k_u.shape == (2, tiny.d_mlp) and keys.k_ctx.shape == (2, 3, tiny.d_mlp)
    for i, r in enumerate(REQ):
        ids, p = subject_last_position(tiny, "", r.prompt, r.subject)
        assert keys.positions[i] == p
        k, v = _out_input(tiny, layer, ids, p)
        torch.testing.assert_close(keys.k_u[i], k.float(), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(keys.w_k_u[i], v.float(), atol=1e-4, rtol=1e-4)
        ks = [_out_input(tiny, layer, *subject_last_position(tiny, c, r.prompt, r.subject))[0] for c in ["", *prefixes]]
        torch.testing.assert_close(keys.k_bar[i], torch.stack(ks).float().mean(0), atol=1e-4, rtol=1e-4)
    no_bare = compute_keys(tiny, REQ, layer, prefixes, include_bare=False)
    torch.testing.assert_close(no_bare.k_bar, keys.k_ctx[:, 1:].mean(1))
    # one request per chunk (the unit the torchrun ranks share) puts every request's keys back in its row
    per = compute_keys(tiny, REQ[::-1], layer, prefixes, requests_per_chunk=1)
    torch.testing.assert_close(per.k_u, keys.k_u.flip(0), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(per.w_k_bar, keys.w_k_bar.flip(0), atol=1e-4, rtol=1e-4)
    assert per.positions == keys.positions[::-1]


def test_key_errors(tiny_models):
    m = tiny_models["gpt2"]
    with pytest.raises(InterpError):
        compute_keys(m, [], 0, ["a. "])
    with pytest.raises(InterpError):
        compute_keys(m, REQ, 99, ["a. "])
    with pytest.raises(InterpError, match="requests_per_chunk"):
        compute_keys(m, REQ, 0, ["a. "], requests_per_chunk=0)
    assert key_hook(3) == "blocks.3.mlp.hook_post"
