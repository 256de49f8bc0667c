import pytest

from interp.errors import InterpError
from interp.recall.facts import build_prompts, demo_prefix, leadins, load_relations, template_text


def test_packaged_data_meets_the_issue():
    rels = load_relations()
    assert len(rels) >= 8
    assert len({r.domain for r in rels}) >= 4
    assert len(leadins()) >= 10
    for r in rels:
        assert len(r.facts) >= 40, r.name
        splits = [f.split for f in r.facts]
        assert splits.count("train") >= 15 and splits.count("test") >= 15
        assert len(r.demos) >= 3
        demo_subjects = {s for s, _ in r.demos}
        assert not demo_subjects & {f.subject for f in r.facts}, "demonstrations must not be evaluated facts"


def test_template_text_marks_the_subject():
    rel = load_relations(["country_capital"])[0]
    for lead in leadins():
        text, a, b = template_text(rel, lead, "France")
        assert text[a:b] == "France"
        assert text.endswith(" is")
    assert template_text(rel, "", "France")[0] == "The capital of France is"


def test_argument_positions_decode_to_the_subject(smollm):
    rels = load_relations(["landmark_country", "company_country"])
    ps = build_prompts(smollm, rels, shots=0, templates=[0, 1], max_facts=6)
    for f, toks, pos in zip(ps.facts, ps.token_ids, ps.arg_positions):
        assert pos == list(range(pos[0], pos[-1] + 1))
        assert smollm.tokenizer.decode([toks[p] for p in pos]).strip().lower() == f.subject.lower()
    few = build_prompts(smollm, rels, shots=3, templates=[0], max_facts=6)
    P = len(smollm.encode(few.prefixes["landmark_country"]))
    for f, toks, pos in zip(few.facts, few.token_ids, few.arg_positions):
        assert min(pos) >= P
        assert smollm.tokenizer.decode([toks[p] for p in pos]).strip().lower() == f.subject.lower()
    assert smollm.tokenizer.decode(ps.answer_ids[0]).strip() == ps.facts[0].answer.split()[0]


def test_tiny_tokenizer_positions_with_bos(tiny_models):
    m = tiny_models["gpt2"]
    rels = load_relations(["country_capital"])
    ps = build_prompts(m, rels, shots=0, templates=[3], max_facts=2)
    assert ps.token_ids[0][0] == m.bos_token_id
    text = m.tokenizer.decode([ps.token_ids[0][p] for p in ps.arg_positions[0]])
    assert text == ps.facts[0].subject


def test_split_filter_and_bad_input(smollm):
    rels = load_relations(["element_symbol"])
    ps = build_prompts(smollm, rels, split="test", max_facts=10)
    assert {f.split for f in ps.facts} == {"test"} and len(ps) == 5
    with pytest.raises(InterpError, match="template indices"):
        build_prompts(smollm, rels, templates=[42])
    with pytest.raises(InterpError, match="unknown relation"):
        load_relations(["capital_of_mars"])
    with pytest.raises(InterpError, match="demonstrations"):
        demo_prefix(rels[0], 99)


def test_independent_facts_skip_train_subjects_and_unknown_relations():
    from interp.recall.facts import independent_relations

    rels = load_relations(["country_capital", "country_continent"])
    train_subject = next(f.subject for f in rels[0].facts if f.split == "train")
    test_subject = next(f.subject for f in rels[0].facts if f.split == "test")
    facts = [{"relation": "country_capital", "subject": train_subject, "answer": "X"},
             {"relation": "country_capital", "subject": test_subject, "answer": "Y"},
             {"relation": "country_capital", "subject": "Atlantis", "answer": "Poseidonia"},
             {"relation": "country_capital", "subject": "atlantis", "answer": "Poseidonia"},
             {"relation": "moon_phase", "subject": "Luna", "answer": "full"},
             {"relation": "country_continent", "subject": "Atlantis", "answer": ""}]
    out = independent_relations(rels, facts)
    assert [r.name for r in out] == ["country_capital"]
    assert [f.subject for f in out[0].facts] == [test_subject, "Atlantis"]
    assert {f.split for f in out[0].facts} == {"independent"} and out[0].template == rels[0].template
    assert len(independent_relations(rels, facts, max_facts=1)[0].facts) == 1
