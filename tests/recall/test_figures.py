import pandas as pd

from interp.recall import figures as F


def _titles(fig):
    return fig.layout.title.text, [a.text for a in fig.layout.annotations]


def test_figures_draw_the_tables():
    lens = pd.DataFrame([{"relation": r, "shots": s, "layer": L, "answer_prob": 0.1 * L, "answer_rank_median": 10 - L}
                         for r in ("all", "country_capital") for s in (0, 3) for L in range(3)])
    fig = F.logit_lens_figure(lens, "m")
    assert "m" in _titles(fig)[0] and len(fig.data) == 8
    assert fig.layout.yaxis2.type == "log"
    assert sum(t.showlegend is not False for t in fig.data) == 2  # one legend entry per relation

    scores = pd.DataFrame([{"relation": "all", "layer": L, "head": h, "name": f"{L}.{h}", "attn_arg": 0.1 * h,
                            "dla_arg": 0.2 * L, "score": 0.02 * h * L} for L in range(3) for h in range(2)])
    fig = F.argument_heads_figure(scores, ["2.1"], "m")
    top = [t for t in fig.data if t.name == "top argument heads"][0]
    assert list(top.text) == ["2.1"] and fig.data[0].z.shape == (3, 2)

    draws = pd.DataFrame([{"ablation": "argument heads", "draw": -1, "heads": "2.1", "answer_prob": 0.2, "drop": 0.3},
                          {"ablation": "random heads", "draw": 0, "heads": "2.0", "answer_prob": 0.45, "drop": 0.05},
                          {"ablation": "random heads", "draw": 1, "heads": "1.0", "answer_prob": 0.55, "drop": -0.05}])
    fig = F.argument_ablation_figure(draws, 0.5, "m")
    assert list(fig.data[0].y) == [0.5, 0.2, 0.5]

    mt = pd.DataFrame([{"method": m, "facts": f, "shots": s, "relation": "all", "accuracy_base": 0.5, "accuracy_mitigated": 0.6,
                        "answer_prob_base": 0.3, "answer_prob_mitigated": 0.35 if m == "heads" else 0.31, "ppl_base": 20.0,
                        "ppl_mitigated": 21.0} for m in ("heads", "frequency") for f in ("test", "independent")
                       for s in ("zero-shot", "3-shot")])
    fig = F.mitigation_figure(mt, "heads: heads 29.0 zero-ablated", "wikipedia:heldout", "m")
    assert "29.0" in _titles(fig)[0] and "wikipedia:heldout" in _titles(fig)[0]
    names = [t.name for t in fig.data]
    assert names.count("before") == 2 and "heads (ppl 20.00 → 21.00)" in names
    heads_bar = [t for t in fig.data if t.name.startswith("heads")][1]
    assert list(heads_bar.y) == [0.35] * 4 and len(set(fig.data[0].x)) == 4
