import math

import pytest
import torch

from interp.rome.evaluate import EvalPrompts, edit_scores, eval_prompts
from interp.rome.requests import EditRequest


def test_edit_scores_counts_what_it_should():
    V = 6
    p = EvalPrompts(["e", "p1", "p2", "n1", "n2"], ["edit", "paraphrase", "paraphrase", "neighborhood", "neighborhood"],
                    [1, 1, 1, 3, 4], [2] * 5)
    before = torch.full((5, V), -5.0)
    before[:, 1] = -0.1
    before[3, 3] = -0.05
    before[4, 4] = -0.05
    after = before.clone()
    after[0, 2] = -0.01  # edit prompt now prefers the new object
    after[1, 2] = -0.01  # one of two paraphrases too
    after[4, 2] = -0.001  # one neighbour changed its top token to the new object
    s = edit_scores(p, before, after)
    assert s["efficacy"] == 1.0 and s["generalization"] == 0.5
    assert s["locality"] == 0.5 and s["neighborhood_score"] == 0.5
    assert s["p_new_after"] == pytest.approx(math.exp(-0.01))


def test_eval_prompts_prefixes_are_seeded(tiny_models):
    m = tiny_models["llama"]
    r = EditRequest(3, "r", "{} is in", "Abc", " x", " y", ["Abc lies in"], [("Def is in", " z")])
    bare = eval_prompts(m, r)
    assert bare.texts == ["Abc is in", "Abc lies in", "Def is in"] and bare.kinds == ["edit", "paraphrase", "neighborhood"]
    a = eval_prompts(m, r, ["P one. ", "P two. "], seed=1)
    b = eval_prompts(m, r, ["P one. ", "P two. "], seed=1)
    assert a.texts == b.texts and all(t.startswith("P ") for t in a.texts)
