"""bf16 against fp32 on the embedded model: answer probabilities, ROME denominators, glitch labels."""

import pytest

from interp.precision import TOLERANCES, compare_precision


@pytest.mark.real_model
@pytest.mark.slow
def test_bf16_agrees_with_fp32_within_the_stated_tolerances(smollm):
    from interp.model import load_model

    bf16 = load_model("smollm2-135m", dtype="bfloat16")
    assert bf16.weights_dtype == "bfloat16" and bf16.precision.startswith("mixed") and smollm.weights_dtype == "float32"
    r = compare_precision("smollm2-135m", "bfloat16", models={"float32": smollm, "bfloat16": bf16})
    assert (r["n_facts"], r["n_requests"], r["n_glitch_ids"]) == (64, 6, 256)
    assert set(r["within_tolerance"]) == set(TOLERANCES)
    assert all(r["within_tolerance"].values()), {k: r[k] for k in TOLERANCES}
    # bf16 does move the numbers: the comparison is not of a model with itself
    assert r["answer_prob_max_abs"] > 0 and r["denominator_rel_median"] > 0


@pytest.mark.parametrize("family", ["gpt2", "gptj", "opt", "gpt_neox", "llama", "gemma3", "qwen2"])
def test_mixed_precision_keeps_attention_scores_and_the_stream_in_float32(family):
    import copy

    import torch

    from interp.capture import capture
    from interp.loading import mixed_precision, precision_label
    from interp.model import wrap_hf_model
    from interp.testing import byte_tokenizer, tiny_hf_model, tiny_model

    ref = tiny_model(family)
    m = wrap_hf_model(tiny_hf_model(family).to(torch.bfloat16), byte_tokenizer(), spec="mixed", prepend_bos=True)
    assert mixed_precision(m.hf_model, torch.bfloat16) == precision_label(torch.bfloat16, "mixed")
    assert m.weights_dtype == "bfloat16" and m.dtype == torch.float32
    L = 1
    hooks = [m.hook("resid_post", L), m.hook("q", L), m.hook("mlp_out", L), m.hook("pattern", L)]
    hooks = [h for h in hooks if h in m.bridge.hook_dict]
    seqs = [[5, 9, 14, 3, 22], [7, 8]]
    seen = {}

    def note(name):
        def fn(x, hook):
            seen.setdefault(name, x.dtype)
        return fn

    with m.hooks([(h, note(h)) for h in hooks]), torch.no_grad():
        m.bridge(torch.tensor([seqs[0]]))
    got = capture(m, seqs, logits=True, positions="all", progress=False)
    assert seen[hooks[0]] == torch.float32, "the residual stream is float32"
    fired = [h for h in hooks if "attn" in h and h in seen]  # (OPT's bridge names a pattern hook it does not fire)
    assert m.hook("q", L) in fired and all(seen[h] == torch.float32 for h in fired), "queries (biases added) and scores are float32"
    assert seen[hooks[2]] == torch.bfloat16, "the MLP runs in bfloat16"
    # the attention projections multiply in bfloat16 and add their bias in float32
    att = [mod for mod in m.hf_model.modules() if "attention" in type(mod).__name__.lower()][0]
    lins = [x for x in att.modules() if isinstance(x, torch.nn.Linear)]
    assert lins or family == "gpt2"  # GPT-2's Conv1D projections stay float32
    for lin in lins:
        assert lin.weight.dtype == torch.bfloat16 and (lin.bias is None or lin.bias.dtype == torch.float32)
        x = torch.randn(3, lin.in_features)
        want_y = x.to(torch.bfloat16).float() @ lin.weight.float().T + (0 if lin.bias is None else lin.bias)
        assert lin(x).dtype == torch.float32 and torch.allclose(lin(x), want_y, rtol=1e-2, atol=1e-2)
    twin = copy.deepcopy(lins[0]) if lins else None  # a copy multiplies by its own weight
    if twin is not None:
        twin.weight.data.zero_()
        x = torch.randn(2, twin.in_features)
        assert float(twin(x).abs().max() if twin.bias is None else (twin(x) - twin.bias).abs().max()) == 0
        assert float(lins[0](x).abs().max()) > 0
    pure = tiny_model(family, dtype=torch.bfloat16, precision="pure")
    want = capture(ref, seqs, logits=True, positions="all", progress=False).logits
    err = {k: max(float((a.float() - b.float()).abs().max()) for a, b in zip(c.logits, want))
           for k, c in (("mixed", got), ("pure", capture(pure, seqs, logits=True, positions="all", progress=False)))}
    assert err["mixed"] <= err["pure"] * 1.5 + 1e-3, err  # no worse than pure bf16 (tiny models: both are close)


@pytest.mark.parametrize("family", ["gpt2", "opt", "llama", "gemma3", "qwen2"])
def test_mixed_precision_gives_a_tied_unembedding_its_own_low_precision_copy(family, monkeypatch):
    """Under autocast a float32 tied weight is cast on every call; the policy keeps a cast copy instead:
    the same logits bit for bit, the input embedding still float32."""
    import torch

    import interp.loading as loading
    from interp.testing import tiny_model

    def mixed(untie: bool):
        with monkeypatch.context() as mp:
            if not untie:
                mp.setattr(loading, "untie_output_head", lambda hf, dtype: False)
            return tiny_model(family, dtype=torch.bfloat16, precision="mixed")

    m, tied = mixed(True), mixed(False)
    emb, head = m.bridge.embed.original_component, m.bridge.unembed.original_component
    assert emb.weight.dtype == torch.float32
    checkpoint_tied = bool(m.hf_model.config.tie_word_embeddings)
    assert checkpoint_tied == (family in ("gpt2", "opt", "gemma3")), "the tiny configs' defaults (Gemma 3 and SmolLM2 are tied)"
    if not checkpoint_tied:  # nothing to copy: the head is bf16 already
        assert head.weight is not emb.weight and head.weight.dtype == torch.bfloat16
    else:
        t_emb, t_head = tied.bridge.embed.original_component, tied.bridge.unembed.original_component
        assert t_head.weight is t_emb.weight and t_head.weight.dtype == torch.float32, "the fixture is tied"
        assert head.weight is not emb.weight and head.weight.dtype == torch.bfloat16
        assert torch.equal(head.weight, emb.weight.to(torch.bfloat16))
        assert m.W_U.dtype == torch.bfloat16
    from interp.glitch.magikarp import embeddings_tied

    assert embeddings_tied(m) == checkpoint_tied, "Magikarp still sees a tied model as tied"
    ids = torch.tensor([[5, 9, 14, 3, 22, 7, 8]])
    with torch.no_grad():
        assert torch.equal(m.bridge(ids), tied.bridge(ids))


def test_bf16_on_a_cpu_without_bf16_instructions_warns(monkeypatch):
    import warnings

    import torch

    from interp import gemm
    from interp.model import load_model, slow_bf16_warning

    def cpu(flags):
        monkeypatch.setattr(gemm, "cpuinfo", lambda: {} if flags is None else {"flags": flags})

    cpu("fpu sse2 avx2 fma")
    assert "no bf16 matrix instructions" in slow_bf16_warning(torch.bfloat16, "cpu")
    assert slow_bf16_warning(torch.float32, "cpu") is None and slow_bf16_warning(torch.bfloat16, "cuda") is None
    assert slow_bf16_warning(torch.float16, "cpu") is None
    with pytest.warns(UserWarning, match="bf16 products run slower than float32"):
        load_model("smollm2-135m", device="cpu", dtype="bfloat16")
    for flags in ("avx2 avx512f avx512_bf16", "avx2 amx_bf16 amx_tile", None):  # the instructions, or nothing known
        cpu(flags)
        assert slow_bf16_warning(torch.bfloat16, "cpu") is None
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        load_model("smollm2-135m", device="cpu", dtype="float32")
    assert not [w for w in seen if "bf16" in str(w.message)]
