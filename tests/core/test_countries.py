"""Independent country facts from countryinfo."""

from collections import Counter

from interp.countries import continent, countryinfo_facts


def test_country_facts_cover_two_relations_with_real_answers():
    facts = countryinfo_facts()
    by_rel = Counter(f["relation"] for f in facts)
    assert by_rel["country_capital"] > 200 and by_rel["country_continent"] > 200
    lookup = {(f["relation"], f["subject"]): f["answer"] for f in facts}
    assert lookup[("country_capital", "France")] == "Paris"
    assert lookup[("country_capital", "Japan")] == "Tokyo"
    assert lookup[("country_continent", "Brazil")] == "South America"
    assert lookup[("country_continent", "Mexico")] == "North America"
    assert all(f["answer"] != f["subject"] for f in facts)


def test_continent_mapping():
    assert continent("Americas", "Latin America and the Caribbean", "Caribbean") == "North America"
    assert continent("Americas", "Northern America") == "North America"
    assert continent("Europe", "Western Europe") == "Europe"
    assert continent("", "") == ""
