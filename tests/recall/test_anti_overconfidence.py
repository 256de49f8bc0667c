import math

import pytest
import torch

from interp.errors import InterpError
from interp.recall.activations import collect_activations
from interp.recall.anti_overconfidence import anti_overconfidence_table, next_token_stats, token_log_frequency
from interp.recall.facts import build_prompts, load_relations


def test_corpus_frequency_counts(tiny_models):
    m = tiny_models["gpt2"]
    lf = token_log_frequency(m, ["aaaa", "ab"], source="corpus")
    a, b, c = m.encode("a", prepend_bos=False)[0], m.encode("b", prepend_bos=False)[0], m.encode("c", prepend_bos=False)[0]
    assert float(lf[a] - lf[b]) == pytest.approx(math.log(6 / 2), abs=1e-5)
    assert float(lf[b] - lf[c]) == pytest.approx(math.log(2), abs=1e-5)
    with pytest.raises(InterpError):
        token_log_frequency(m, ["x"], source="wikipedia")


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
    ps = build_prompts(m, load_relations(["country_capital"]), max_facts=3)
    acts = collect_activations(m, ps)
    lf = torch.randn(m.d_vocab)
    t = anti_overconfidence_table(m, acts, lf, [m.n_layers - 1], {m.n_layers - 1: torch.randn(m.d_model)})
    assert list(t["kind"]).count("head") == m.n_heads and set(t["kind"]) == {"head", "mlp", "mlp_intercept"}
    assert t["freq_corr"].between(-1, 1).all()


@pytest.mark.real_model
def test_final_layer_heads_attend_to_the_first_position(smollm):
    ps = build_prompts(smollm, load_relations(["country_capital"]), max_facts=12)
    acts = collect_activations(smollm, ps, layers=[28, 29])
    # the paper's claim holds here: most final-layer heads look at position 0 (the sink; SmolLM2 has no BOS)
    assert float((acts.attn_first[:, 1].mean(0) > 0.5).float().mean()) > 0.5
