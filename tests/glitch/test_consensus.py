import pandas as pd
import pytest

from interp import InterpError
from interp.glitch.consensus import (
    ORACLE_PROMPTS,
    PAPER_PROMPT,
    PAPER_REPLY,
    SINGLE_PROMPT,
    agreement_summary,
    consensus_labels,
    consensus_oracle,
    oracle_templates,
)
from interp.glitch.oracle import REPEAT_PROMPT, repeat_oracle, repeat_template


def test_consensus_labels_all_and_majority():
    v = pd.DataFrame({"a": ["glitch", "glitch", "normal", "glitch", "glitch"],
                      "b": ["glitch", "normal", "normal", "glitch", ""],
                      "c": ["glitch", "glitch", "glitch", "normal", ""]})
    lab = consensus_labels(v, ["a", "b", "c"])
    assert lab.consensus_all.tolist() == ["glitch", "normal", "normal", "normal", ""]
    assert lab.consensus_majority.tolist() == ["glitch", "glitch", "normal", "glitch", ""]
    assert lab.n_glitch_votes.tolist() == [3, 2, 1, 2, 1]


def test_registry_keeps_todays_prompt_first():
    from interp.glitch.oracle import REPEAT_REPLY, REPEAT_SHOTS

    assert list(ORACLE_PROMPTS)[0] == SINGLE_PROMPT
    assert ORACLE_PROMPTS[SINGLE_PROMPT] == (REPEAT_PROMPT, REPEAT_REPLY, REPEAT_SHOTS)  # the stored ground truth's prompt
    assert len(set(ORACLE_PROMPTS.values())) == len(ORACLE_PROMPTS)
    assert ORACLE_PROMPTS["paper"][2] == () and "return back to me" in ORACLE_PROMPTS["paper"][0]
    with pytest.raises(InterpError):
        oracle_templates(None, ["nope"])


@pytest.mark.real_model
def test_templates_on_the_real_model(smollm):
    tpls = oracle_templates(smollm)
    assert tpls[SINGLE_PROMPT].text == repeat_template(smollm).text and all(t.chat for t in tpls.values())


def test_cascade_asks_later_prompts_only_about_glitch_tokens(tiny_models):
    m = tiny_models["llama"]
    ids = list(range(65, 91))
    tpls = {SINGLE_PROMPT: repeat_template(m, shots=()), "other_examples": repeat_template(m, shots=("q",)),
            "paper": repeat_template(m, prompt=PAPER_PROMPT, reply=PAPER_REPLY, shots=())}  # short: the tiny context
    full = consensus_oracle(m, ids, tpls, cascade=False, max_new_tokens=3)
    casc = consensus_oracle(m, ids, tpls, cascade=True, max_new_tokens=3)
    assert full.calls == {n: len(ids) for n in tpls}
    g1 = (full.table[SINGLE_PROMPT] == "glitch").to_numpy()
    assert casc.calls[SINGLE_PROMPT] == len(ids) and casc.calls["other_examples"] == int(g1.sum())
    # the cascade's all-label equals the all-label from every verdict
    assert casc.table.consensus_all.tolist() == full.table.consensus_all.tolist()
    # stored verdicts of the first prompt are looked up and priced per call
    ref = repeat_oracle(m, ids, template=tpls[SINGLE_PROMPT], max_new_tokens=3).table
    lut = dict(zip(ref.token_id, ref.cls))
    known = consensus_oracle(m, ids, tpls, known={SINGLE_PROMPT: (lambda t: [lut[i] for i in t], 0.5)}, max_new_tokens=3)
    assert known.seconds[SINGLE_PROMPT] == pytest.approx(0.5 * len(ids))
    assert known.table.consensus_all.tolist() == casc.table.consensus_all.tolist()


def test_agreement_summary_counts():
    v = pd.DataFrame({"few_shot": ["glitch", "glitch", "normal", "normal"], "b": ["glitch", "normal", "normal", "glitch"]})
    v = pd.concat([v, consensus_labels(v, ["few_shot", "b"])], axis=1)
    s = agreement_summary(v, ["few_shot", "b"])
    assert s["prevalence_few_shot"] == 0.5 and s["prevalence_consensus_all"] == 0.25
    assert s["agreement_few_shot_b"] == 0.5 and s["agreement_all"] == 0.5
    assert s["single_glitch_kept_all"] == 0.5 and s["n_tokens"] == 4
    assert REPEAT_PROMPT == ORACLE_PROMPTS["other_examples"][0]
