"""Each real model is right, not just loaded: HF parity, BOS policy, facts, untied unembedding."""

import pytest
import torch

import interp
from interp.capture import capture

pytestmark = pytest.mark.real_model

FACTS = {  # prompt -> expected first answer token, in each model's own conventions
    "gemma": ("The capital of Germany is Berlin. The capital of Italy is Rome. The capital of France is", " Paris"),
    "qwen": ("The capital of France is", " Paris"),
}


@pytest.mark.parametrize("name", ["gemma", "qwen"])
def test_bridge_logits_equal_hf_and_fact_is_top1(name, request):
    model = request.getfixturevalue(name)
    prompt, answer = FACTS[name]
    ids = model.to_tokens(prompt)
    with torch.no_grad():
        ref = model.hf_model(ids).logits
    got = model.forward(ids)
    assert torch.allclose(got, ref, atol=1e-4 * ref.abs().max().item())
    assert model.tokenizer.decode([int(got[0, -1].argmax())]) == answer


def test_bos_policy_per_model(gemma, qwen):
    assert gemma.prepend_bos and gemma.encode("x")[0] == gemma.bos_token_id
    assert not qwen.prepend_bos and qwen.encode("x")[0] != qwen.bos_token_id
    # the measured failure this policy prevents: Qwen with a prepended <|endoftext|> answers " the"
    with torch.no_grad():
        p_bos = qwen.forward(qwen.to_tokens("The capital of France is", prepend_bos=True))[0, -1].softmax(-1)
        p_plain = qwen.forward(qwen.to_tokens("The capital of France is"))[0, -1].softmax(-1)
    paris = qwen.first_token(" Paris")
    assert p_plain[paris] > 0.8 > p_bos[paris]


def test_the_bridge_tokenizer_encodes_like_the_models(gemma, qwen):
    # Gemma's tokenizer already puts BOS first, so the bridge gets a copy instead of a 9 s reload
    text = "The capital of France is"
    for m in (gemma, qwen):
        assert m.bridge.tokenizer is not m.tokenizer
    assert gemma.bridge.tokenizer(text)["input_ids"] == gemma.tokenizer(text)["input_ids"] == gemma.encode(text)
    assert gemma.tokenizer.padding_side == gemma.bridge.tokenizer.padding_side


def test_gguf_path_of_a_registry_model_gets_the_same_policy(qwen):
    from interp import loading

    path = loading.assembled_gguf_path(loading.registry()["qwen2.5-coder-0.5b"])
    assert loading.tokenizer_adds_bos(qwen.tokenizer) is False
    assert path.is_file()


def test_untied_unembedding_and_chat_flags(gemma, qwen):
    assert not qwen.hf_model.config.tie_word_embeddings
    assert not torch.equal(qwen.W_U.T, qwen.W_E)
    assert gemma.chat is False and qwen.chat is True
    assert gemma.describe()["weight_hash"].startswith("gguf-sha256:a5fd3b62")
    assert qwen.describe()["weight_hash"].startswith("gguf-sha256:1d961463")


@pytest.mark.parametrize("name", ["gemma", "qwen"])
def test_head_outputs_sum_to_attention_output(name, request):
    model = request.getfixturevalue(name)
    L = model.n_layers // 2
    hooks = [f"blocks.{L}.attn.hook_result", f"blocks.{L}.hook_attn_out"]
    acts = capture(model, ["The capital of France is"], hooks=hooks, positions="last")
    res, out = acts[hooks[0]], acts[hooks[1]]
    assert not res.requires_grad and res.grad_fn is None
    total = res.sum(-2) + model.b_O(L)
    if model.family == "gemma3":  # hook_attn_out is after Gemma's post-attention norm
        total = model.bridge.blocks[L].ln1_post(total)
    assert torch.allclose(total, out, atol=1e-3 * out.abs().max().item())
    # per-head writes, linearised through that norm, still add up to the attention output
    per_head = model.head_writes(res, L)
    assert torch.allclose(per_head.sum(-2) + model.attn_bias_write(res, L), out, atol=1e-3 * out.abs().max().item())


@pytest.mark.parametrize("name", ["smollm", "gemma", "qwen"])
def test_last_block_reruns_match_whole_passes(name, request):
    """The recall mitigation's evaluations re-run only the final block (interp.tail), and there only
    the last token on the kept keys and values: exact on each real family, sliding windows and
    post-norms included."""
    from interp.tail import TailCache, last_only_supported, tail_supported

    model = request.getfixturevalue(name)
    assert tail_supported(model)
    last = model.n_layers - 1
    seqs = [model.encode("The capital of France is Paris, and the capital of Italy is"), model.encode("Gold has the symbol")]

    def zero_head(z, hook):
        z = z.clone()
        z[:, :, 1] = 0
        return z

    with model.hooks([(model.hook("z", last), zero_head)]):
        ref = capture(model, seqs, logits=True, progress=False).logits.float()
        tail = TailCache(model, seqs, last)
        got = torch.stack(tail.logits("last"))
        fast = torch.stack(tail.logits("last", last_only=True))
    assert torch.allclose(ref, got, atol=1e-3 * ref.abs().max().item())
    assert last_only_supported(model)
    assert torch.allclose(ref, fast, atol=1e-3 * ref.abs().max().item())


def test_mixed_bf16_keeps_qwen_answer_probabilities(qwen):
    # Qwen2.5's large QKV biases: in pure bf16 one of the 64 packaged facts ("Portugal ... continent
    # of") loses 0.35 of its answer probability; the default mixed policy (bf16 projections with their
    # biases added in float32, float32 scores and stream) keeps every fact within the 0.05 tolerance.
    # Pure bf16 is run on that fact's relation only (bf16 products are slow on CPUs without bf16
    # instructions: 51 s for the 64 facts on an AVX2-only one)
    from interp.precision import TOLERANCES, answer_probabilities

    ref, _ = answer_probabilities(qwen, 8)
    mixed = interp.load_model("qwen2.5-coder-0.5b", device="cpu", dtype="bfloat16")
    assert mixed.precision.startswith("mixed") and mixed.describe()["dtype"] == "bfloat16"
    got, _ = answer_probabilities(mixed, 8)
    del mixed
    pure_model = interp.load_model("qwen2.5-coder-0.5b", device="cpu", dtype="bfloat16", precision="pure")
    continent = ["country_continent"]
    pure, _ = answer_probabilities(pure_model, 8, continent)
    ref_c, _ = answer_probabilities(qwen, 8, continent)
    tol = TOLERANCES["answer_prob_max_abs"]
    assert float((got - ref).abs().max()) < tol < float((pure - ref_c).abs().max())
