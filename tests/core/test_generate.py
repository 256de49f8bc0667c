"""Greedy generation: padding, shared prefix and early stopping change nothing but cost."""

import pytest
import torch

import interp
from interp.testing import TINY_FAMILIES, tiny_model


def _reference(model, prompt_ids, n):
    ids = torch.tensor([prompt_ids])
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model.forward(ids)[0, -1].argmax())
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_batched_generation_equals_unbatched_full_recompute(family):
    model = tiny_model(family)
    prompts = ["ab", "hello world", "x"]
    got = interp.greedy_generate(model, prompts, max_new_tokens=5, stop_at_eos=False, batch_size=3)
    for p, g in zip(prompts, got):
        assert g == _reference(model, model.encode(p), 5), family


def test_prefix_and_stop():
    model = tiny_model("llama")
    prefix = "Say: "
    suffixes = ["abc", "de"]
    full = interp.greedy_generate(model, [prefix + s for s in suffixes], 6, stop_at_eos=False)
    pre = interp.greedy_generate(model, [model.encode(s, prepend_bos=False) for s in suffixes], 6, prefix=prefix,
                                 stop_at_eos=False)
    assert pre == full
    stopped = interp.greedy_generate(model, [prefix + s for s in suffixes], 6, stop=lambda i, ids: len(ids) >= 2,
                                     stop_at_eos=False)
    assert stopped == [f[:2] for f in full]


@pytest.mark.real_model
def test_real_model_chat_answer(smollm):
    out = interp.greedy_generate(smollm, [smollm.chat_prompt("What is the capital of France?")], 8)
    assert "Paris" in smollm.tokenizer.decode(out[0])


def test_hooks_see_each_pass_and_last_positions():
    """Intervention hooks learn which pass runs (shared prefix, prompts, decoding) and each row's last token."""
    model = tiny_model("llama")
    prefix = model.encode("Say: ")
    rows = [model.encode("abcd", prepend_bos=False), model.encode("e", prepend_bos=False)]
    seen = []

    def record(x, hook):
        info = interp.current_batch()
        seen.append((info.phase, x.shape[0], x.shape[1], info.last.tolist(), info.rows.tolist(), info.offset))
        return x

    with model.hooks([(model.hook("resid_post", 0), record)]):
        interp.greedy_generate(model, rows, 3, prefix=prefix, stop_at_eos=False, stop=lambda i, ids: i == 1)
    P = len(prefix)
    assert seen[0] == ("prefix", 1, P, [P - 1], [], 0)
    # prompts are left-padded: every row's last token sits at the end; row 1 leaves after one token
    assert seen[1] == ("prompt", 2, 4, [3, 3], [0, 1], P)
    assert seen[2:] == [("decode", 1, 1, [0], [0], P)] * 2
