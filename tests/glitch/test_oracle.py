import pytest

from interp import InterpError, greedy_generate
from interp.glitch.oracle import (
    TOKEN_CLASSES,
    call_tokens,
    is_repeated,
    repeat_oracle,
    repeat_target,
    repeat_template,
    token_bytes,
    token_class,
)
from interp.glitch.scan import load_ground_truth


def test_template_splits_around_the_token(tiny):
    tpl = repeat_template(tiny, chat=True, shots=("ab",))
    assert "{token}" in tpl.text and tpl.chat
    token = tiny.encode("Q", prepend_bos=False)[0]
    full = tpl.text.replace("{token}", "Q")
    assert list(tpl.prefix_ids) + tpl.row(token) == tiny.encode(full)
    plain = repeat_template(tiny, chat=False, shots=())
    assert not plain.chat and plain.text.endswith("\n'")


def test_template_rejects_bad_prompts(tiny_models):
    with pytest.raises(InterpError):
        repeat_template(tiny_models["llama"], prompt="no slot here")


def test_token_classes_on_byte_tokenizer(tiny_models):
    m = tiny_models["gpt2"]
    tok = m.tokenizer
    space = tok.convert_tokens_to_ids("Ġ")
    assert token_class(m, 256) == "special"
    assert token_class(m, space) == "whitespace"
    assert token_bytes(tok, space) == b" "
    a = m.encode("a", prepend_bos=False)[0]
    assert token_class(m, a) is None
    high = [i for i in range(256) if token_bytes(tok, i) is not None and token_bytes(tok, i)[0] >= 0x80]
    assert len(high) == 128 and all(token_class(m, i) == "partial_utf8" for i in high)


def test_is_repeated_rule():
    assert is_repeated("cru", "Cru'")
    assert not is_repeated("cru", "Cru'", ignore_case=False)
    assert not is_repeated("", "anything")
    assert not is_repeated("markings", "marks'")


def test_oracle_matches_unshared_generation(tiny_models):
    m = tiny_models["llama"]
    tpl = repeat_template(m, shots=("ab",))
    ids = [m.encode(c, prepend_bos=False)[0] for c in "abcXYZ12"] + [256, m.tokenizer.convert_tokens_to_ids("Ġ")]
    res = repeat_oracle(m, ids, max_new_tokens=6, batch_size=3, template=tpl)
    t = res.table
    assert list(t.token_id) == ids
    assert set(t.cls) <= set(TOKEN_CLASSES)
    assert t.cls.iloc[-2] == "special" and t.cls.iloc[-1] == "whitespace"
    full = greedy_generate(m, [list(tpl.prefix_ids) + tpl.row(i) for i in ids[:8]], 6, stop_at_eos=True)
    for i, gen in zip(ids[:8], full):
        text = m.tokenizer.decode(gen)
        expect = "normal" if is_repeated(repeat_target(m, i), text) else "glitch"
        assert t.set_index("token_id").cls[i] == expect
        if expect == "normal":
            assert t.set_index("token_id").generated[i] in text


def test_tokens_per_call_is_what_one_call_forwards_after_the_prefix(tiny):
    # the ranked search's budget prices a call at tokens_per_call: count what the generator runs
    tpl = repeat_template(tiny, shots=("ab",))
    token = tiny.encode("Q", prepend_bos=False)[0]
    seen = []

    def count(x, hook):
        seen.append(int(x.shape[0] * x.shape[1]))
        return x

    resid = tiny.hook("resid_pre", 0)
    with tiny.hooks([(resid, count)]):
        greedy_generate(tiny, [tpl.row(token)], 5, prefix=list(tpl.prefix_ids), stop_at_eos=False)
    # the first pass is the shared prefix's, run once and cached; the rest is this call's
    assert seen[0] == len(tpl.prefix_ids) and len(seen) == 1 + 5
    assert sum(seen[1:]) == tpl.tokens_per_call(5) == len(tpl.suffix_ids) + 5
    assert call_tokens(3, 10) == 13
    for bad in ((-1, 10), (3, 0)):
        with pytest.raises(InterpError, match="suffix_len"):
            call_tokens(*bad)


def test_oracle_rejects_out_of_range(tiny_models):
    with pytest.raises(InterpError):
        repeat_oracle(tiny_models["gpt2"], [10_000], template=repeat_template(tiny_models["gpt2"], shots=()))


@pytest.mark.real_model
def test_stored_ground_truth_reproduces(smollm):
    truth, meta = load_ground_truth("smollm2-135m")
    glitch = truth[truth.cls == "glitch"].sample(6, random_state=0).token_id.tolist()
    normal = truth[truth.cls == "normal"].sample(6, random_state=0).token_id.tolist()
    res = repeat_oracle(smollm, glitch + normal)
    assert res.table.cls.tolist() == ["glitch"] * 6 + ["normal"] * 6
    assert meta["oracle"]["template"]["text"] == repeat_template(smollm).text


def test_label_stability_compares_prompts(tiny_models):
    import pandas as pd

    from interp.glitch.oracle import label_stability, stability_summary

    m = tiny_models["llama"]
    ids = [m.encode(c, prepend_bos=False)[0] for c in "abcXYZ"]
    ref = repeat_oracle(m, ids, max_new_tokens=4, template=repeat_template(m, shots=("ab",))).table.cls.tolist()
    same = label_stability(m, ids, ref, [["ab"], ["q"]], max_new_tokens=4)
    assert list(same.columns) == ["token_id", "reference", "shots_0", "shots_1"]
    assert same.shots_0.tolist() == ref  # the default examples again: the same verdicts
    tab = pd.DataFrame({"token_id": range(4), "reference": ["glitch", "glitch", "normal", "normal"],
                        "shots_0": ["glitch", "normal", "normal", "glitch"], "shots_1": ["glitch", "glitch", "normal", "normal"]})
    s = stability_summary(tab)
    assert s["glitch_kept_mean"] == 0.75 and s["glitch_kept_all"] == 0.5 and s["normal_flipped_mean"] == 0.25
    with pytest.raises(InterpError):
        label_stability(m, ids, ref[:-1], [["q"]])
    with pytest.raises(InterpError):
        label_stability(m, ids, ref, [])
