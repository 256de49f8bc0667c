"""Token frequencies: counted with the model's own tokenizer, cached, and from wordfreq."""

import pytest
import torch

from interp import frequency
from interp.errors import InterpError


def test_counts_match_a_direct_count(tmp_path, monkeypatch, tiny_models):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    model = tiny_models["llama"]
    f = tmp_path / "text.txt"
    f.write_text("abab cab abab cab abab cab\n\nbbb a bbb a bbb a bbb a bbb")
    freq = frequency.token_frequency(model, str(f))
    expected = torch.zeros(model.d_vocab, dtype=torch.float64)
    for ids in model.tokenizer(["abab cab abab cab abab cab", "bbb a bbb a bbb a bbb a bbb"], add_special_tokens=False)["input_ids"]:
        for i in ids:
            expected[i] += 1
    assert torch.equal(freq.counts, expected)
    assert freq.source == "file:text.txt" and freq.n_tokens == int(expected.sum())
    assert int(freq.occurs.sum()) == int((expected > 0).sum())
    assert torch.isclose(freq.probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    again = frequency.token_frequency(model, str(f))  # from the cache
    assert torch.equal(again.counts, freq.counts)
    assert list((tmp_path / "cache" / "frequency").glob("*.safetensors"))


def test_unknown_source_is_one_line(tiny_models):
    with pytest.raises(InterpError, match="frequency source 'no-such-source'.*allowed: wikipedia, wordfreq, model"):
        frequency.token_frequency(tiny_models["llama"], "no-such-source")
    assert frequency.source_problem("no-such-source") is not None
    assert all(frequency.source_problem(s) is None for s in frequency.SOURCES)


def test_log_probs_put_unseen_tokens_below_seen():
    f = frequency.TokenFrequency(torch.tensor([3.0, 0.0, 1.0], dtype=torch.float64), "x")
    lp = f.log_probs
    assert lp[1] < lp[2] < lp[0]


@pytest.mark.real_model
def test_wikipedia_frequency_on_the_real_tokenizer(smollm):
    f = frequency.token_frequency(smollm, "wikipedia")
    assert f.source == "wikipedia" and f.n_tokens > 500_000
    top = {smollm.tokenizer.decode([int(i)]) for i in f.counts.topk(12).indices}
    assert {" the", " of", " and"} <= top
    w = frequency.token_frequency(smollm, "wordfreq")
    the, paris = smollm.to_single_token(" the"), smollm.to_single_token(" Paris")
    assert w.counts[the] > w.counts[paris] > 0


def test_model_source_is_the_models_summed_next_token_distribution(tiny_models):
    m = tiny_models["llama"]
    texts = ["The capital of France is Paris.", "Gold has the symbol Au."]
    counts, n = frequency.model_counts(m, texts)
    toks = m.encode(texts)
    assert n == sum(len(t) for t in toks)
    with torch.no_grad():  # the same sum from plain forward passes, one text at a time
        direct = sum(torch.softmax(m(torch.tensor([t]))[0].double(), -1)[:, : m.d_vocab].sum(0) for t in toks)
    assert torch.allclose(counts, direct, atol=1e-4)
    assert counts.sum().item() == pytest.approx(n, rel=1e-5)
