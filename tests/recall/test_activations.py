import torch

from interp.recall.activations import collect_activations
from interp.recall.facts import build_prompts, load_relations


def test_collect_on_every_family(tiny):
    rels = load_relations(["country_capital", "element_symbol"])
    for shots in (0, 2):
        ps = build_prompts(tiny, rels, shots=shots, max_facts=3)
        acts = collect_activations(tiny, ps)
        n = len(ps)
        assert acts.resid_post.shape == (n, tiny.n_layers, tiny.d_model)
        assert acts.z.shape == (n, tiny.n_layers, tiny.n_heads, tiny.d_head)
        assert torch.all(acts.attn_arg >= 0) and torch.all(acts.attn_arg + acts.attn_first <= 1 + 1e-4)
        assert torch.allclose(acts.resid_post[:, -1], acts.final_resid, atol=1e-5)
        # answer probability equals a plain single forward pass of the full prompt
        i = n - 1
        with torch.no_grad():
            lg = tiny.forward(torch.tensor([ps.token_ids[i]]))[0, -1].float()
        assert abs(float(torch.softmax(lg, -1)[ps.answer_ids[i]]) - float(acts.answer_prob[i])) < 1e-4
        sub = acts.subset([0, 2])
        assert sub.prompts.facts[1] == ps.facts[2] and torch.equal(sub.z[1], acts.z[2])




def test_final_block_streams_serve_the_tail_reruns_exactly():
    from interp.recall.activations import prompt_tails
    from interp.recall.mitigation import Mitigation, evaluate_recall
    from interp.testing import tiny_model

    m = tiny_model("gemma3")  # sliding-window layers, a BOS, a scaled embedding
    last = m.n_layers - 1
    rels = load_relations(["country_capital", "element_symbol"])
    mit = Mitigation("heads", [(last, 0)], "zero")
    for shots in (0, 2):
        ps = build_prompts(m, rels, shots=shots, templates=[0, 1], max_facts=4)
        kept = collect_activations(m, ps, layers=[last])
        plain = collect_activations(m, ps, layers=[last], final_streams=False)
        assert plain.streams is None and kept.streams[0] == last
        pre = [len(m.encode(ps.prefixes[f.relation])) if ps.prefixes[f.relation] else 0 for f in ps.facts]
        assert [len(s) for s in kept.streams[1]] == [len(t) - P for t, P in zip(ps.token_ids, pre)]
        rows = [5, 0, 3]
        sub = kept.subset(rows)
        assert all(torch.equal(a, kept.streams[1][i]) for a, i in zip(sub.streams[1], rows))
        with m.hooks(mit.hooks(m)):
            whole, _ = evaluate_recall(m, plain)
            rebuilt, _ = evaluate_recall(m, plain, from_layer=last)  # streams computed again
            fast, _ = evaluate_recall(m, kept, from_layer=last)  # streams from the activation pass
            fast_sub, _ = evaluate_recall(m, sub, from_layer=last)
        assert torch.allclose(fast, whole, atol=1e-6) and torch.allclose(fast, rebuilt, atol=1e-6)
        assert torch.allclose(fast_sub, whole[rows], atol=1e-6)
        assert not torch.allclose(whole, kept.answer_prob, atol=1e-4)  # the ablation acted
        tail = prompt_tails(m, kept, last, 32)[0]
        assert tail.seqs[0] == ps.token_ids[0] and tail.resid[0] is kept.streams[1][0]  # kept, not copied
        assert (tail.head is None) == (shots == 0)
