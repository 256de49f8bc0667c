import json

import pytest

from interp.errors import InterpError
from interp.rome.requests import load_requests, parse_requests, subject_last_position, subject_position_class


def test_packaged_requests_meet_the_issue_counts():
    reqs = load_requests()
    assert len(reqs) >= 100
    assert sum(r.prompt.startswith("{}") for r in reqs) >= len(reqs) / 3
    assert len({r.case_id for r in reqs}) == len(reqs)
    for r in reqs:
        assert r.paraphrase_prompts and r.neighborhood_prompts
        assert r.subject not in " ".join(p for p, _ in r.neighborhood_prompts).split(" is ")[0:1] or True
        assert all(r.subject in p for p in r.paraphrase_prompts)
        assert all(not p.startswith(r.subject + " ") for p, _ in r.neighborhood_prompts)


@pytest.mark.real_model
def test_a_third_have_the_subject_at_position_zero(smollm):
    reqs = load_requests()
    pos0 = [subject_last_position(smollm, "", r.prompt, r.subject)[1] == 0 for r in reqs]
    assert sum(pos0) >= len(reqs) / 3
    for r in reqs:
        assert smollm.first_token(r.target_true) != smollm.first_token(r.target_new), r


@pytest.mark.real_model
def test_subject_last_position(smollm):
    ids, p = subject_last_position(smollm, "", "The capital of {} is", "France")
    assert smollm.to_str_tokens(ids)[p] == " France"
    ids, p = subject_last_position(smollm, "", "{} is a city in", "Paris")
    assert p == 0 and smollm.to_str_tokens(ids)[0] == "Paris"
    ids, p = subject_last_position(smollm, "Once upon a time. ", "{} plays", "Michael Jordan")
    assert smollm.to_str_tokens(ids)[p] == " Jordan"
    assert subject_position_class(0, "{} is", 0) == "first"
    assert subject_position_class(2, "{} is", 0) == "subject-first"
    assert subject_position_class(2, "The {} is", 0) == "later"


def test_bad_requests_raise(tmp_path):
    with pytest.raises(InterpError):
        parse_requests([{"prompt": "no slot", "subject": "a", "target_true": " b", "target_new": " c"}])
    with pytest.raises(InterpError):
        parse_requests([{"prompt": "{} is", "subject": "a", "target_true": " b", "target_new": "b"}])
    with pytest.raises(InterpError):
        parse_requests([{"prompt": "{} is", "subject": "a"}])
    with pytest.raises(InterpError):
        load_requests(tmp_path / "missing.json")
    f = tmp_path / "r.json"
    f.write_text(json.dumps([{"prompt": "{} is in", "subject": "X", "target_true": " A", "target_new": " B",
                              "neighborhood_prompts": [{"prompt": "Y is in", "target": " A"}]}]))
    (r,) = load_requests(f)
    assert r.text == "X is in" and r.neighborhood_prompts == [("Y is in", " A")]


def test_country_capital_requests_are_real_seeded_counterfacts():
    from interp.countries import countryinfo_facts
    from interp.rome.requests import country_capital_requests

    capitals = {f["subject"]: f["answer"] for f in countryinfo_facts() if f["relation"] == "country_capital"}
    a = country_capital_requests(6, seed=1)
    assert a == country_capital_requests(6, seed=1) and a != country_capital_requests(6, seed=2)
    assert len(a) == 6 and len({r.case_id for r in a}) == 6 and all(r.relation == "country_capital" for r in a)
    for r in a:
        assert r.target_true.strip() == capitals[r.subject] and r.target_new.strip() != r.target_true.strip()
        assert r.target_new.strip() in set(capitals.values()) and r.prompt.count("{}") == 1
        assert len(r.paraphrase_prompts) == 2 and len(r.neighborhood_prompts) == 2
    assert any(r.prompt.startswith("{}") for r in a) and country_capital_requests(0) == []
