"""Re-running only the last blocks gives the whole forward pass's logits under late interventions."""

import pytest
import torch

from interp.capture import capture
from interp.tail import TailCache, tail_supported
from interp.testing import TINY_FAMILIES, tiny_model

SEQS = [[5, 6, 7, 8, 9, 10, 40], [11, 12, 13], [70, 71, 72, 73, 74]]


def _zero_head0(z, hook):
    z = z.clone()
    z[:, :, 0] = 0
    return z


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tail_logits_equal_whole_passes_under_a_final_layer_ablation(family):
    m = tiny_model(family)
    if family in ("gpt2", "opt"):  # learned positions are added to inputs_embeds inside the decoder
        assert not tail_supported(m)
        return
    assert tail_supported(m)
    last = m.n_layers - 1
    tail = TailCache(m, SEQS, last)
    plain = tail.logits("all")
    with m.hooks([(m.hook("z", last), _zero_head0)]):
        ref_all = capture(m, SEQS, positions="all", logits=True, progress=False).logits
        ref_last = capture(m, SEQS, logits=True, progress=False).logits
        got_all, got_last = tail.logits("all"), tail.logits("last")
        got_some = tail.logits("all", rows=[2, 0])
    for r, g, p in zip(ref_all, got_all, plain):
        assert torch.allclose(r.float(), g, atol=1e-5)
        assert (g - p).abs().max() > 1e-4  # the hook acted in the re-run block
    assert torch.allclose(ref_last.float(), torch.stack(got_last), atol=1e-5)
    assert torch.equal(got_some[0], got_all[2]) and torch.equal(got_some[1], got_all[0])


def test_tail_with_a_shared_prefix_equals_whole_sequences():
    m = tiny_model("llama")
    pre, conts = [1, 20, 21, 22, 23], [[5, 6, 7, 8], [11, 12]]
    a = TailCache(m, conts, m.n_layers - 1, prefix=pre)
    b = TailCache(m, [pre + c for c in conts], m.n_layers - 1)
    assert a.seqs == b.seqs
    for x, y in zip(a.logits("last"), b.logits("last")):
        assert torch.allclose(x, y, atol=1e-5)


def test_recall_evaluation_and_perplexity_from_the_last_block_match_whole_passes():
    from interp.recall.activations import collect_activations
    from interp.recall.facts import build_prompts, load_relations
    from interp.recall.mitigation import Mitigation, evaluate_recall, perplexity, text_tail

    m = tiny_model("qwen2")
    last = m.n_layers - 1
    rels = load_relations(["country_capital", "element_symbol"])
    mit = Mitigation("heads", [(last, 0), (last, 2)], "zero")
    texts = ["The capital of France is Paris.", "Gold has the chemical symbol Au and is a metal."]
    for shots in (0, 2):
        acts = collect_activations(m, build_prompts(m, rels, shots=shots, templates=[0], max_facts=4), layers=[last])
        with m.hooks(mit.hooks(m)):
            whole = evaluate_recall(m, acts)
            fast = evaluate_recall(m, acts, from_layer=mit.start_layer(m))
        assert torch.allclose(whole[0], fast[0], atol=1e-5) and torch.equal(whole[1], fast[1])
        assert not torch.allclose(whole[0], acts.answer_prob, atol=1e-4)  # the ablation changed something
    tail = text_tail(m, texts, last)
    assert perplexity(m, texts, mit, tail=tail) == pytest.approx(perplexity(m, texts, mit), rel=1e-5)
    assert perplexity(m, texts, tail=tail) == pytest.approx(perplexity(m, texts), rel=1e-5)
    early = Mitigation("heads", [(0, 1)], "zero")  # acts before the cached block: whole passes are used
    assert perplexity(m, texts, early, tail=tail) == pytest.approx(perplexity(m, texts, early), rel=1e-6)


def _scale_last_position_head1(z, hook):
    from interp.capture import current_batch

    info = current_batch()
    z = z.clone()
    rows = torch.arange(z.shape[0])
    z[rows, info.last, 1] = z[rows, info.last, 1] * 0.3
    return z


@pytest.mark.parametrize("family", [f for f in TINY_FAMILIES if f not in ("gpt2", "opt")])
def test_last_token_reruns_equal_whole_passes_where_earlier_positions_are_unchanged(family):
    # ragged lengths, batches of 2, one sequence of a single token: the last token alone on the
    # kept keys and values equals a whole pass (a final-block ablation at every position, and a
    # last-position ablation from a middle block)
    from interp.tail import last_only_supported

    m = tiny_model(family)
    assert last_only_supported(m)
    last = m.n_layers - 1
    seqs = SEQS + [[33], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]
    final = TailCache(m, seqs, last, batch_size=2)
    with m.hooks([(m.hook("z", last), _zero_head0)]):
        ref = capture(m, seqs, logits=True, progress=False).logits.float()
        got = torch.stack(final.logits("last", last_only=True))
        again = torch.stack(final.logits("last", last_only=True))  # from the kept keys and values
    assert torch.allclose(ref, got, atol=1e-5) and torch.equal(got, again)
    assert final.__dict__["_ctx"]  # the contexts were kept
    middle = TailCache(m, seqs, 1, batch_size=2)
    with m.hooks([(m.hook("z", 1), _scale_last_position_head1), (m.hook("z", last), _scale_last_position_head1)]):
        ref = capture(m, seqs, logits=True, progress=False).logits.float()
        got = torch.stack(middle.logits("last", last_only=True))
    assert torch.allclose(ref, got, atol=1e-5)
    assert not torch.allclose(ref, capture(m, seqs, logits=True, progress=False).logits.float(), atol=1e-4)


def test_last_token_reruns_are_wrong_for_an_ablation_that_changes_earlier_positions_in_a_middle_block():
    # what last_only's contract excludes: the earlier positions' keys and values in later blocks
    # are the unchanged model's, so an ablation at every position of block 1 is not reproduced
    m = tiny_model("llama")
    tail = TailCache(m, SEQS, 1)
    with m.hooks([(m.hook("z", 1), _zero_head0)]):
        ref = capture(m, SEQS, logits=True, progress=False).logits.float()
        whole = torch.stack(tail.logits("last"))
        fast = torch.stack(tail.logits("last", last_only=True))
    assert torch.allclose(ref, whole, atol=1e-5)
    assert not torch.allclose(ref, fast, atol=1e-4)


def test_hooks_are_set_aside_and_restored():
    from interp.tail import hooks_suspended

    m = tiny_model("llama")
    with m.hooks([(m.hook("z", 0), _zero_head0)]):
        hooked = capture(m, SEQS, logits=True, progress=False).logits
        with hooks_suspended(m):
            plain = capture(m, SEQS, logits=True, progress=False).logits
        again = capture(m, SEQS, logits=True, progress=False).logits
    assert torch.equal(plain, capture(m, SEQS, logits=True, progress=False).logits)
    assert torch.equal(hooked, again) and not torch.allclose(hooked, plain, atol=1e-4)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_perplexity_from_scored_positions_equals_the_whole_logits_path(family):
    # the perplexity alone is read from the scored positions a chunk at a time (interp.scoring.next_token_nll);
    # with the mean next-token distribution it comes from every position's logits: the same number,
    # from whole passes and from a final-block tail (GPT-2: whole passes only)
    from interp.recall.anti_overconfidence import next_token_stats
    from interp.recall.mitigation import text_tail

    m = tiny_model(family)
    texts = ["The capital of France is Paris.", "Gold has the chemical symbol Au and is a metal.", "Hi"]
    _, ref, n_ref = next_token_stats(m, texts, batch_size=2)
    mean, got, n = next_token_stats(m, texts, batch_size=2, mean_distribution=False)
    assert mean is None and n == n_ref and got == pytest.approx(ref, rel=1e-5)
    tail = text_tail(m, texts, m.n_layers - 1)
    assert (tail is None) == (family == "gpt2")
    if tail is not None:
        with m.hooks([(m.hook("z", m.n_layers - 1), _zero_head0)]):
            _, ref, _ = next_token_stats(m, texts, batch_size=2)
            got = next_token_stats(m, texts, batch_size=2, mean_distribution=False, tail=tail)[1]
        assert got == pytest.approx(ref, rel=1e-5)
