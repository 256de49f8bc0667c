import pytest
import torch

from interp.errors import InterpError
from interp.recall.ablation import ablate_heads
from interp.recall.activations import collect_activations
from interp.recall.facts import build_prompts, load_relations
from interp.recall.mitigation import ablated_readout, evaluate_recall, mitigation_table, select_suppressor_heads


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
    t = mitigation_table(m, {"zero-shot": acts}, chosen)
    row = t[t["relation"] == "all"].iloc[0]
    assert row["answer_prob_base"] == pytest.approx(base, abs=1e-6)
    if chosen:
        assert row["answer_prob_mitigated"] > base
        assert trace[trace["kept"] & (trace["step"] == "measured")]["answer_prob"].iloc[-1] == pytest.approx(
            row["answer_prob_mitigated"], abs=1e-5)
    else:
        assert row["answer_prob_mitigated"] == pytest.approx(base, abs=1e-6)
    with pytest.raises(InterpError, match="metric"):
        select_suppressor_heads(m, [acts], metric="f1")
