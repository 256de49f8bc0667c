import random

import pytest

from interp.recall.activations import collect_activations
from interp.recall.argument_heads import (argument_ablation, argument_head_scores, random_heads_like, relation_mean_z,
                                          top_argument_heads)
from interp.recall.facts import build_prompts, load_relations


def test_scores_and_ablation_run_on_tiny(tiny_models):
    m = tiny_models["opt"]
    ps = build_prompts(m, load_relations(["country_capital", "city_country"]), max_facts=3)
    acts = collect_activations(m, ps)
    s = argument_head_scores(m, acts)
    assert len(s) == 3 * m.n_layers * m.n_heads
    assert (s["score"] >= 0).all() and ((s["attn_arg"] >= 0) & (s["attn_arg"] <= 1 + 1e-5)).all()
    means = relation_mean_z(acts, [1])
    rows = ps.rows("country_capital")
    assert means[1][rows[0]].allclose(acts.z[rows, 1].float().mean(0))
    summary, draws = argument_ablation(m, acts, [(1, 0), (2, 1)], n_random=2, seed=0)
    assert len(draws) == 3
    assert summary["argument_ablation_drop"] == pytest.approx(summary["base_prob"] - summary["argument_prob"])


def test_random_heads_come_from_the_same_layers(tiny_models):
    m = tiny_models["llama"]
    heads = [(1, 0), (2, 3)]
    for _ in range(5):
        r = random_heads_like(m, heads, random.Random(_))
        assert len(r) == 2 and not set(r) & set(heads) and {L for L, _ in r} <= {1, 2}


@pytest.mark.real_model
def test_argument_heads_matter_more_than_random_heads(smollm):
    ps = build_prompts(smollm, load_relations(["country_capital", "city_country"]), max_facts=20)
    acts = collect_activations(smollm, ps)
    known = [i for i, c in enumerate(acts.correct.tolist()) if c]
    assert len(known) >= 15
    scores = argument_head_scores(smollm, acts, known)
    top = top_argument_heads(scores, 3)
    assert all(L >= 10 for L, _ in top), "argument heads sit in middle-to-deep layers"
    best = scores[(scores["relation"] == "all")].sort_values("score").iloc[-1]
    assert best["attn_arg"] > 0.4 and best["dla_arg"] > 0
    summary, _ = argument_ablation(smollm, acts.subset(known), top, n_random=2, seed=0)
    assert summary["argument_ablation_drop"] > 0.1
    assert summary["argument_ablation_drop"] > 3 * max(summary["random_ablation_drop"], 0.01)


@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen2"])
@pytest.mark.parametrize("shots", [0, 2])
def test_mean_ablation_from_a_late_block_equals_whole_passes(tiny_models, family, shots):
    # the ablation re-runs only the blocks from the heads' layer on: same probabilities as whole passes,
    # with per-prompt means and last positions handed to the hooks as under capture (and a shared prefix)
    from interp.recall.argument_heads import _mean_ablated_probs

    m = tiny_models[family]
    ps = build_prompts(m, load_relations(["country_capital", "city_country"]), shots=shots, max_facts=4)
    acts = collect_activations(m, ps)
    heads = [(1, 0), (2, 1)]
    means = relation_mean_z(acts, [1, 2])
    whole = _mean_ablated_probs(m, acts, heads, means, 3, "whole")
    tail = _mean_ablated_probs(m, acts, heads, means, 3, "tail", from_layer=1)
    assert acts.__dict__["_tails"][1], "the late-block path was taken"
    assert tail.allclose(whole, atol=1e-5)
    assert float((whole - acts.answer_prob.float()).abs().max()) > 1e-6, "the ablation changed something"
