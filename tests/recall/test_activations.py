import torch

import interp
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


