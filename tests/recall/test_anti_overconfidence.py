import math

import pytest
import torch

from interp.errors import InterpError
from interp.recall.activations import collect_activations
from interp.recall.anti_overconfidence import anti_overconfidence_table, frequency_correlation, next_token_stats
from interp.recall.facts import build_prompts, load_relations

from .conftest import FakeFrequency, fake_frequency


def test_frequency_correlation_uses_only_tokens_that_occur():
    counts = torch.tensor([0, 0, 0, 0, 1.0, 10.0, 100.0, 1000.0], dtype=torch.float64)
    freq = FakeFrequency(counts, counts > 0)
    # logits rise with frequency on the tokens that occur; the unseen tokens carry huge logits that
    # would swamp a correlation over the whole vocabulary
    logits = torch.tensor([50.0, 60.0, 70.0, 80.0, 1.0, 2.0, 3.0, 30.0])
    sp, pe = frequency_correlation(logits, freq)
    assert sp == pytest.approx(1.0)
    assert 0.5 < pe < 1.0
    full = float(torch.corrcoef(torch.stack([logits.double(), counts.clamp_min(1e-300).log()]))[0, 1])
    assert full < 0
    sp, _ = frequency_correlation(-logits, freq)
    assert sp == pytest.approx(-1.0)
    assert all(math.isnan(x) for x in frequency_correlation(logits, FakeFrequency(torch.zeros(8), torch.zeros(8, dtype=torch.bool))))


def test_perplexity_matches_a_manual_forward(tiny_models):
    m = tiny_models["llama"]
    texts = ["The cat sat on the mat.", "Paris is a city."]
    mean, ppl, count = next_token_stats(m, texts, batch_size=1)
    nll, n = 0.0, 0
    for t in texts:
        ids = torch.tensor([m.encode(t)])
        with torch.no_grad():
            logp = torch.log_softmax(m.forward(ids)[0].float(), -1)
        nll -= float(logp[:-1].gather(1, ids[0, 1:, None]).sum())
        n += ids.shape[1] - 1
    assert count == n
    assert ppl == pytest.approx(math.exp(nll / n), rel=1e-4)
    assert float(mean.sum()) == pytest.approx(1.0, abs=1e-4)


def test_table_runs(tiny_models):
    m = tiny_models["gpt_neox"]
    last = m.n_layers - 1
    ps = build_prompts(m, load_relations(["country_capital"]), max_facts=3)
    acts = collect_activations(m, ps)
    t = anti_overconfidence_table(m, acts, fake_frequency(m), [last], {("country_capital", last): torch.randn(m.d_model)})
    heads = t[t["kind"] == "head"]
    assert len(heads) == m.n_heads and {"head", "mlp", "mlp_intercept"} <= set(t["kind"])
    assert t["freq_spearman"].between(-1, 1).all() and t["freq_pearson"].between(-1, 1).all()
    assert list(heads["first_position"]) == list(heads["attn_first"] > 0.5)
    fp = t[t["kind"] == "first_position_heads"]
    assert len(fp) == int(heads["first_position"].sum() > 0)
    assert set(t.loc[t["kind"] == "mlp_intercept", "relation"]) == {"country_capital", "all"}


@pytest.mark.real_model
def test_final_layer_heads_attend_to_the_first_position(smollm):
    ps = build_prompts(smollm, load_relations(["country_capital"]), max_facts=12)
    acts = collect_activations(smollm, ps, layers=[28, 29])
    # the paper's claim holds here: most final-layer heads look at position 0 (the sink; SmolLM2 has no BOS)
    assert float((acts.attn_first[:, 1].mean(0) > 0.5).float().mean()) > 0.5


def test_perplexity_needs_text(tiny_models):
    with pytest.raises(InterpError, match="no text"):
        next_token_stats(tiny_models["llama"], [""])
