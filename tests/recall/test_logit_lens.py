import pytest
import torch

from interp.recall.activations import collect_activations
from interp.recall.facts import build_prompts, load_relations
from interp.recall.logit_lens import (answer_prob_after_final_attention, answer_prob_by_layer, final_drop, logit_lens_table,
                                      readout_answer)


@pytest.mark.parametrize("family", ["gemma3", "qwen2", "gpt2"])
def test_last_layer_lens_is_the_model_output(tiny_models, family, monkeypatch):
    m = tiny_models[family]
    ps = build_prompts(m, load_relations(["country_capital"]), max_facts=4)
    acts = collect_activations(m, ps)
    # the lens on the final stream is the model's own read-out, so the capture's answer scores stand for it
    ans = torch.tensor(ps.answer_ids)
    p_last, r_last = readout_answer(m, acts.resid_post[:, -1], ans)
    assert torch.allclose(p_last, acts.answer_prob, atol=1e-5) and torch.equal(r_last.long(), acts.answer_rank)
    rows = []
    monkeypatch.setattr(m, "unembed", lambda x, *a, _f=m.unembed, **k: rows.append(len(x)) or _f(x, *a, **k))
    prob, rank = answer_prob_by_layer(m, acts)
    assert sum(rows) == 4 * (m.n_layers - 1)  # every layer but the final one is read out
    assert prob.shape == (4, m.n_layers)
    assert torch.equal(prob[:, -1], acts.answer_prob) and torch.equal(rank[:, -1].long(), acts.answer_rank)
    for j in (0, m.n_layers - 2):
        p, r = readout_answer(m, acts.resid_post[:, j], ans)
        assert torch.equal(prob[:, j], p) and torch.equal(rank[:, j], r)
    monkeypatch.undo()
    t = logit_lens_table(m, acts)
    assert set(t["relation"]) == {"all", "country_capital"}
    d = final_drop(t)
    assert (d["drop"] >= 0).all() and (d["peak_prob"] >= d["final_prob"]).all()
    r = d[d["relation"] == "all"].iloc[0]
    assert r["final_attention_change"] + r["final_mlp_change"] == pytest.approx(r["final_prob"] - r["prob_before_final_layer"], abs=1e-6)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3", "gptj"])
def test_after_final_attention_is_resid_mid(tiny_models, family):
    import interp

    m = tiny_models[family]
    last = m.n_layers - 1
    ps = build_prompts(m, load_relations(["country_capital"]), max_facts=3)
    acts = collect_activations(m, ps, layers=[last])
    hook = m.hook("resid_mid", last)
    if hook in m.bridge.hook_dict:
        cap = interp.capture(m, [ps.token_ids[i] for i in range(len(ps))], hooks=[hook])
        assert torch.allclose(acts.final_mid, cap.acts[hook].float(), atol=1e-5)
    else:  # parallel attention: everything but the final MLP
        cap = interp.capture(m, [ps.token_ids[i] for i in range(len(ps))], hooks=[m.hook("resid_pre", last), m.hook("attn_out", last)])
        ref = cap.acts[m.hook("resid_pre", last)] + cap.acts[m.hook("attn_out", last)]
        assert torch.allclose(acts.final_mid, ref.float(), atol=1e-4)
    p, _ = answer_prob_after_final_attention(m, acts)
    with torch.no_grad():
        ref_p = torch.softmax(m.unembed(acts.final_mid).float(), -1)[torch.arange(len(ps)), torch.tensor(ps.answer_ids)]
    assert torch.allclose(p, ref_p, atol=1e-6)
    t = logit_lens_table(m, acts, subsets={"all": range(len(ps)), "known": [0]})
    assert set(t["facts"]) == {"all", "known"} and (t["point"] == "resid_mid").sum() == 2 * 2
    assert t.loc[t["point"] == "resid_mid", "layer"].iloc[0] == last - 0.5


@pytest.mark.real_model
def test_answer_emerges_in_late_layers(smollm):
    ps = build_prompts(smollm, load_relations(["country_capital"]), max_facts=16)
    acts = collect_activations(smollm, ps, layers=[5, 15, 29])
    prob, _ = answer_prob_by_layer(smollm, acts)
    known = acts.correct
    assert known.sum() >= 8
    assert prob[known, 0].mean() < 0.01 and prob[known, 2].mean() > 0.3
