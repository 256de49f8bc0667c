import pytest
import torch

from interp.recall.activations import collect_activations
from interp.recall.facts import build_prompts, load_relations
from interp.recall.logit_lens import answer_prob_by_layer, final_drop, logit_lens_table


def test_last_layer_lens_is_the_model_output(tiny_models):
    m = tiny_models["gemma3"]
    ps = build_prompts(m, load_relations(["country_capital"]), max_facts=4)
    acts = collect_activations(m, ps)
    prob, rank = answer_prob_by_layer(m, acts)
    assert prob.shape == (4, m.n_layers)
    assert torch.allclose(prob[:, -1], acts.answer_prob, atol=1e-5)
    assert torch.equal(rank[:, -1].long(), acts.answer_rank)
    t = logit_lens_table(m, acts)
    assert set(t["relation"]) == {"all", "country_capital"}
    d = final_drop(t)
    assert (d["drop"] >= 0).all() and (d["peak_prob"] >= d["final_prob"]).all()


@pytest.mark.real_model
def test_answer_emerges_in_late_layers(smollm):
    ps = build_prompts(smollm, load_relations(["country_capital"]), max_facts=16)
    acts = collect_activations(smollm, ps, layers=[5, 15, 29])
    prob, _ = answer_prob_by_layer(smollm, acts)
    known = acts.correct
    assert known.sum() >= 8
    assert prob[known, 0].mean() < 0.01 and prob[known, 2].mean() > 0.3
