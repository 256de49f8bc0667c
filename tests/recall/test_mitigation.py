import pandas as pd
import pytest
import torch

from interp.errors import InterpError
from interp.recall.ablation import ablate_heads
from interp.recall.activations import collect_activations
from interp.recall.facts import build_prompts, load_relations
from interp.recall.mitigation import (Mitigation, ablated_readout, auto_mitigation, choose_mitigation, evaluate_recall,
                                     frequency_direction, frequency_projection_hooks, mitigate, mitigation_table,
                                     projected_readout, projected_readouts, select_suppressor_heads)

from .conftest import FakeFrequency, fake_frequency


@pytest.mark.parametrize("family,mode", [("gptj", "zero"), ("gpt_neox", "scale"), ("gptj", "mean")])
def test_direct_path_readout_is_exact_for_parallel_blocks(tiny_models, family, mode):
    m = tiny_models[family]
    last = m.n_layers - 1
    ps = build_prompts(m, load_relations(["country_capital"]), shots=2, max_facts=4)
    acts = collect_activations(m, ps, layers=[last])
    means = torch.randn(m.n_heads, m.d_head)
    heads = [(last, 0), (last, 2)]
    pred_p, pred_ok = ablated_readout(m, acts, heads, mode, 0.3, means)
    with ablate_heads(m, heads, mode=mode, scale=0.3, means={last: means}):
        p, ok = evaluate_recall(m, acts)
    assert torch.allclose(pred_p, p, atol=1e-5)
    assert torch.equal(pred_ok, ok)
    with pytest.raises(InterpError, match="last-layer"):
        ablated_readout(m, acts, [(0, 1)])


def test_direct_path_readout_misses_the_final_mlp_in_sequential_blocks(tiny_models):
    m = tiny_models["llama"]
    last = m.n_layers - 1
    ps = build_prompts(m, load_relations(["country_capital"]), max_facts=3)
    acts = collect_activations(m, ps, layers=[last])
    est, _ = ablated_readout(m, acts, [(last, 0)])
    with ablate_heads(m, [(last, 0)]):
        real, _ = evaluate_recall(m, acts)
    assert not torch.allclose(est, real, atol=1e-6)


def test_selection_and_table(tiny_models):
    m = tiny_models["gemma3"]
    last = m.n_layers - 1
    ps = build_prompts(m, load_relations(["country_capital"]), max_facts=6)
    acts = collect_activations(m, ps, layers=[last])
    chosen, trace = select_suppressor_heads(m, [acts], min_gain=0.0)
    base = trace.iloc[0]["answer_prob"]
    t = mitigation_table(m, {("test", "zero-shot"): acts}, Mitigation("heads" if chosen else "none", chosen))
    row = t[t["relation"] == "all"].iloc[0]
    assert row["answer_prob_base"] == pytest.approx(base, abs=1e-6)
    if chosen:
        assert row["answer_prob_mitigated"] > base
        assert trace[trace["kept"] & (trace["step"] == "measured")]["answer_prob"].iloc[-1] == pytest.approx(
            row["answer_prob_mitigated"], abs=1e-5)
    else:
        assert row["answer_prob_mitigated"] == pytest.approx(base, abs=1e-6)
    # every final-layer head is measured alone by a real pass, whatever its direct attribution says;
    # only heads whose own removal helps are candidates
    alone = trace[trace["step"] == "measured alone"].set_index("heads")
    assert list(alone.index) == [f"{last}.{h}" for h in range(m.n_heads)]
    with ablate_heads(m, [(last, 1)]):
        p1, _ = evaluate_recall(m, acts)
    assert alone.loc[f"{last}.1", "answer_prob"] == pytest.approx(float(p1.mean()), abs=1e-6)
    assert all(alone.loc[f"{L}.{h}", "answer_prob"] > base for L, h in chosen)
    with pytest.raises(InterpError, match="metric"):
        select_suppressor_heads(m, [acts], metric="f1")


def test_frequency_direction_reads_out_as_frequency(tiny_models):
    m = tiny_models["llama"]
    freq = fake_frequency(m)
    d = frequency_direction(m, freq)
    assert float(d.norm()) == pytest.approx(1.0, abs=1e-5)
    from interp.recall.anti_overconfidence import frequency_correlation
    from interp.recall.attribution import component_logits

    sp, _ = frequency_correlation(component_logits(m, d, torch.tensor(1.0)), freq)
    rnd, _ = frequency_correlation(component_logits(m, torch.randn(m.d_model), torch.tensor(1.0)), freq)
    assert sp > 0.3 and sp > abs(rnd)
    with pytest.raises(InterpError, match="occur"):
        frequency_direction(m, FakeFrequency(torch.zeros(m.d_vocab), torch.zeros(m.d_vocab, dtype=torch.bool)))


@pytest.mark.parametrize("family", ["llama", "gemma3", "gptj", "opt"])
def test_projection_readout_equals_the_hooked_model(tiny_models, family):
    m = tiny_models[family]
    ps = build_prompts(m, load_relations(["country_capital"]), shots=2, max_facts=3)
    acts = collect_activations(m, ps, layers=[m.n_layers - 1])
    d = frequency_direction(m, fake_frequency(m))
    est_p, est_ok = projected_readout(m, acts, d, 0.8)
    with m.hooks(frequency_projection_hooks(m, d, 0.8)):
        p, ok = evaluate_recall(m, acts)
    assert torch.allclose(est_p, p, atol=1e-5) and torch.equal(est_ok, ok)
    assert not torch.allclose(p, acts.answer_prob, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "gemma3", "opt"])
def test_projection_readouts_from_one_product_equal_one_readout_per_factor(tiny_models, family, monkeypatch):
    m = tiny_models[family]
    ps = build_prompts(m, load_relations(["country_capital"]), shots=2, max_facts=3)
    acts = collect_activations(m, ps, layers=[m.n_layers - 1])
    d = frequency_direction(m, fake_frequency(m))
    gammas = (-1.0, 0.5, 1.0)
    products = []
    monkeypatch.setattr(m, "unembed", lambda x, *a, _f=m.unembed, **k: products.append(len(x)) or _f(x, *a, **k))
    got = projected_readouts(m, acts, d, gammas)
    assert sum(products) == len(acts.prompts)  # one product with W_U for all three factors
    for (p, ok), g in zip(got, gammas):
        want_p, want_ok = projected_readout(m, acts, d, g)
        assert torch.allclose(p, want_p, atol=1e-5) and torch.equal(ok, want_ok)
    assert not torch.allclose(got[0][0], got[2][0], atol=1e-4)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt_neox", "qwen2", "opt"])
def test_projections_read_from_the_head_setting_pass_equal_their_own_passes(tiny_models, family, monkeypatch):
    import interp.recall.mitigation as M

    m = tiny_models[family]
    L = m.n_layers - 1
    d = frequency_direction(m, fake_frequency(m))
    heads = Mitigation("heads", [(L, 1)], "scale", 0.25)
    variants = [(d, 0.75), (d, -1.0)]
    for shots in (0, 2):  # zero-shot, and few-shot prompts on a shared prefix
        ps = build_prompts(m, load_relations(["country_capital", "element_symbol"]), shots=shots, max_facts=4)
        acts = collect_activations(m, ps, layers=[L])
        want = []
        for x in [heads] + [Mitigation("both", heads.heads, "scale", 0.25, None, dd, g) for dd, g in variants]:
            with m.hooks(x.hooks(m)):
                want.append(evaluate_recall(m, acts, from_layer=x.start_layer(m), last_only=x.last_position_only(m)))
        calls = []
        monkeypatch.setattr(M, "evaluate_recall", lambda *a, _f=M.evaluate_recall, **k: calls.append(a) or _f(*a, **k))
        got = M.evaluate_recall_projected(m, acts, heads, variants)
        monkeypatch.undo()
        # one pass where the last block can be resumed (OPT's cannot: one pass per setting)
        assert len(calls) == (0 if M.prompt_tails(m, acts, L, 32) is not None else 3)
        for (p, ok), (wp, wok) in zip(got, want):
            assert torch.allclose(p, wp, atol=1e-5) and torch.equal(ok, wok)
        assert not torch.allclose(got[0][0], got[1][0], atol=1e-5)  # the projection changes the answers
    # the measured tables share the passes and equal one table per mitigation
    sets = {("test", "zero-shot"): acts}
    mits = [heads, Mitigation("frequency", direction=d, gamma=0.75), Mitigation("both", heads.heads, "scale", 0.25, None, d, 0.75)]
    one = pd.concat([mitigation_table(m, sets, x) for x in mits], ignore_index=True)
    together = M.mitigation_tables(m, sets, mits)
    pd.testing.assert_frame_equal(together.drop(columns=["answer_prob_mitigated"]), one.drop(columns=["answer_prob_mitigated"]))
    assert together["answer_prob_mitigated"].tolist() == pytest.approx(one["answer_prob_mitigated"].tolist(), abs=1e-6)


def test_choose_mitigation_reports_every_candidate_and_keeps_the_rule(tiny_models, monkeypatch):
    import interp.recall.mitigation as M

    m = tiny_models["gemma3"]
    last = m.n_layers - 1
    ps = build_prompts(m, load_relations(["country_capital", "element_symbol"]), max_facts=6)
    acts = collect_activations(m, ps, layers=[last])
    texts = ["The capital of France is Paris.", "Gold is Au."]
    passes = []
    for name in ("_shared_pass", "text_nlls"):
        monkeypatch.setattr(M, name, lambda *a, _f=getattr(M, name), **k: passes.append(a) or _f(*a, **k))
    chosen, cands, trace = choose_mitigation(m, [acts], fake_frequency(m), texts, min_gain=0.0)
    # one pass over the text per head setting tried, and one for the model as it is and the projection alone
    tried = trace[trace["ppl_cost"].notna() & trace["method"].isin(["heads", "both"])]["setting"]
    assert len(passes) == 1 + len({s.split(": ", 1)[1].split(" + final-MLP")[0] for s in tried})
    assert "frequency" in cands and set(trace["method"]) >= {"none", "frequency", "frequency (candidate)"}
    assert list(cands) == [k for k in ("none", "heads", "frequency", "both") if k in cands]  # the tables' order
    base_acc, base_p = trace.iloc[0]["accuracy"], trace.iloc[0]["answer_prob"]
    row = trace[trace["chosen"]]
    assert len(row) == 1
    row = row.iloc[0]
    assert row["method"] == chosen.method and (chosen.method == "none" or row["setting"] == chosen.describe())
    if chosen.method != "none":
        assert row["accuracy"] >= base_acc and row["answer_prob"] > base_p and row["ppl_cost_upper"] <= 0.02
        assert row["ppl_cost_upper"] >= row["ppl_cost"]
        # no candidate with a higher train answer probability qualified
        better = trace[(trace["answer_prob"] > row["answer_prob"]) & trace["method"].isin(["heads", "frequency", "both"])]
        assert ((better["accuracy"] < base_acc) | (better["ppl_cost_upper"] > 0.02)).all()
    heads = trace[trace["method"] == "heads"]
    if len(heads):  # removed, and rescaled by each factor; each of those with the projection
        assert len(heads) == 4 and heads["setting"].str.contains("x0.5").any()
        both = trace[trace["method"] == "both"]
        assert len(both) == 4 and both["setting"].str.contains("x0.5 \\+ final-MLP").any()
        # each read from its head setting's pass: what a pass of its own measures
        b = cands["both"]
        own = both[both["setting"] == b.describe()].iloc[0]
        assert [own["accuracy"], own["answer_prob"]] == pytest.approx(list(M.measure_mitigation(m, [acts], b)), abs=1e-6)
        # "heads" and "both" name one head setting: the chosen one's where it changes heads
        assert (cands["heads"].heads, cands["heads"].mode, cands["heads"].scale) == (cands["both"].heads, cands["both"].mode, cands["both"].scale)
        if chosen.heads:
            assert (cands["heads"].mode, cands["heads"].scale) == (chosen.mode, chosen.scale)
    only, _, t2 = choose_mitigation(m, [acts], fake_frequency(m), [], method="frequency", min_gain=0.0)
    assert only.method in ("frequency", "none") and "heads" not in set(t2["method"])
    with pytest.raises(InterpError, match="method"):
        choose_mitigation(m, [acts], method="magic")


def test_perplexity_cost_bounds_the_cost_over_texts():
    import numpy as np

    from interp.recall.mitigation import perplexity_cost

    n = torch.tensor([100, 200, 50])
    base = torch.tensor([300.0, 640.0, 150.0], dtype=torch.float64)
    even = base + 0.01 * n  # every text 0.01 nats per token worse: no spread over texts
    cost, upper = perplexity_cost(base, even, n)
    assert cost == pytest.approx(np.expm1(0.01)) and upper == pytest.approx(cost)
    uneven = base + torch.tensor([0.0, 0.0, 3.5], dtype=torch.float64)  # the same total rise, from one text
    cost2, upper2 = perplexity_cost(base, uneven, n)
    assert cost2 == pytest.approx(cost)
    d = np.array([0.0, 0.0, 3.5]) - 0.01 * n.numpy()
    se = np.sqrt(3 / 2 * (d ** 2).sum()) / 350
    assert upper2 == pytest.approx(np.expm1(0.01 + 1.645 * se))
    assert perplexity_cost(base, uneven, n, z=0.0) == pytest.approx((cost2, cost2))
    with pytest.raises(InterpError, match="scored tokens"):
        perplexity_cost(base[:0], base[:0], n[:0])


def test_text_nll_sums_to_the_perplexity(tiny_models):
    import math

    from interp.recall.anti_overconfidence import next_token_stats, text_nll

    m = tiny_models["qwen2"]
    texts = ["The river runs north through the old town.", "Gold is Au.", "A"]
    nll, n = text_nll(m, texts, batch_size=2)
    assert n.tolist() == [len(m.encode(t)) - 1 for t in texts]
    _, ppl, count = next_token_stats(m, texts, mean_distribution=True)  # the other path: full log-softmax per text
    assert int(n.sum()) == count and math.exp(float(nll.sum()) / count) == pytest.approx(ppl, rel=1e-5)


def test_mitigate_applies_the_auto_choice(tiny_models, fake_sources):
    m = tiny_models["llama"]
    chosen = auto_mitigation(m, "frequency", relations=["country_capital"], shots=2, selection_texts=2)
    assert auto_mitigation(m, "frequency", relations=["country_capital"], shots=2, selection_texts=2) is chosen
    ids = [m.encode("The capital of France is")]
    import interp

    base = interp.capture(m, ids, logits=True).logits
    forced = Mitigation("frequency", direction=frequency_direction(m, fake_frequency(m)), gamma=1.0)
    with mitigate(m, forced):
        moved = interp.capture(m, ids, logits=True).logits
    assert not torch.allclose(moved, base, atol=1e-5)
    with mitigate(m, "frequency", relations=["country_capital"], shots=2, selection_texts=2):
        got = interp.capture(m, ids, logits=True).logits
    assert torch.allclose(got, base, atol=1e-6) == (chosen.method == "none")
    assert torch.allclose(interp.capture(m, ids, logits=True).logits, base, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt_neox", "qwen2"])
def test_shared_perplexity_pass_equals_one_pass_per_mitigation(tiny_models, family, monkeypatch):
    import interp.recall.mitigation as M

    m = tiny_models[family]
    texts = ["The river runs north through the old town and past the mill.",
             "In 1901 the society published its first report on the coast.", "A short one."]
    L = m.n_layers - 1
    d = frequency_direction(m, fake_frequency(m))
    heads = [(L, 1)]
    mits = [Mitigation(), Mitigation("heads", heads, "scale", 0.25), Mitigation("frequency", direction=d, gamma=0.75),
            Mitigation("both", heads, "scale", 0.25, None, d, 0.75), Mitigation("frequency", direction=d, gamma=-1.0)]
    tail = M.text_tail(m, texts, L)
    assert tail is not None
    each = [M.perplexity(m, texts, x, tail=tail) for x in mits]
    per_text = [M.text_nlls(m, texts, x, tail=tail) for x in mits]
    calls = []
    real = M.text_nlls
    monkeypatch.setattr(M, "text_nlls", lambda *a, **k: calls.append(a) or real(*a, **k))
    shared = M.perplexities(m, texts, mits, tail=tail)
    assert calls == []  # two passes (none, heads), the projections derived from them
    assert shared == pytest.approx(each, rel=1e-5)
    for (a, n), (b, n2) in zip(M.text_nlls_many(m, texts, mits, tail=tail), per_text):  # per text too (the cost's spread)
        assert n.tolist() == n2.tolist() and a.tolist() == pytest.approx(b.tolist(), rel=1e-5)
    assert len({round(v, 4) for v in each}) == len(each)  # every mitigation changes the text's perplexity
    calls.clear()
    assert M.perplexities(m, texts, mits) == pytest.approx(each, rel=1e-5)  # no tail: one pass each
    assert len(calls) == len(mits)


@pytest.mark.parametrize("quick", [True, False])
def test_auto_mitigation_chooses_from_what_the_run_chooses_from(tiny_models, tmp_path, fake_sources, monkeypatch, quick):
    """`mitigate`, `interp ablate-final-heads` and `interp run recall` choose alike: the same train
    prompts, selection text, head rescalings and settings reach choose_mitigation (quick and full sizes)."""
    from interp.recall import mitigation, pipeline
    from interp.results import Run

    m = tiny_models["llama"]
    seen = []
    real = mitigation.choose_mitigation

    def spy(model, train, freq, texts=(), method="auto", mode="zero", scale=0.0, means=None, max_heads=None,
            metric="answer_prob", gammas=mitigation.GAMMAS, head_scales=mitigation.HEAD_SCALES, **kw):
        seen.append({"prompts": [(a.prompts.shots, a.prompts.token_ids, a.prompts.answer_ids) for a in train],
                     "texts": list(texts), "method": method, "mode": mode, "scale": scale, "max_heads": max_heads,
                     "metric": metric, "head_scales": tuple(head_scales), "freq": None if freq is None else freq.source})
        return real(model, train, freq, texts, method, mode, scale, means, max_heads, metric, gammas, head_scales, **kw)

    monkeypatch.setattr(pipeline, "choose_mitigation", spy)
    monkeypatch.setattr(mitigation, "choose_mitigation", spy)
    params = dict(relations=["country_capital"], max_facts=4, n_random=1, analyse="all", top_k_heads=2, shots=2, templates=[0, 3],
                  ppl_texts=2, independent_facts=2, **({} if quick else {"head_scales": 2}))
    pipeline.run(m, Run(tmp_path, "recall", model=m, params=params, seed=0), quick=quick, **params)
    auto_mitigation(m, "auto", quick=quick, **{k: v for k, v in params.items() if k not in ("n_random", "analyse", "top_k_heads")})
    assert len(seen) == 2
    assert seen[0]["head_scales"] == ((0.5,) if quick else (0.5, 0.25))
    assert seen[0] == seen[1]
