"""Declared parameters: every parameter an analysis reads is declared, checked and listed."""

import inspect
import re

import pytest

from interp.analyses import ANALYSES, declared, get, resolve_run_params
from interp.errors import InterpError
from interp.params import Param, Params


@pytest.mark.parametrize("analysis", list(ANALYSES))
def test_every_parameter_read_is_declared(analysis):
    """A parameter the pipeline reads (``p["name"]``) or defaults (``DEFAULTS``) must be declared:
    an undeclared one is a failure here, never a silently unchecked value."""
    mod = get(analysis)
    params = declared(analysis)
    assert mod.DEFAULTS == params.defaults()
    src = inspect.getsource(mod)
    read = set(re.findall(r"""\bp\[["']([A-Za-z_][A-Za-z0-9_]*)["']\]""", src))
    read |= set(re.findall(r"""\bp\.get\(["']([A-Za-z_][A-Za-z0-9_]*)["']""", src))
    assert read, "the pattern no longer finds the pipeline's parameter reads"
    assert sorted(read - set(params.params)) == []
    for p in params:
        assert p.help and p.kind, p.name
        assert params.validate({p.name: p.default}) == {p.name: p.default}
        if p.has_quick:
            params.validate({p.name: p.quick}, quick=True)


@pytest.mark.parametrize("analysis", list(ANALYSES))
def test_quick_defaults_are_what_a_quick_run_records(analysis):
    _, rec = resolve_run_params(analysis, {}, quick=True)
    for p in declared(analysis):
        if p.has_quick:
            assert rec[p.name] == p.quick, p.name
    assert rec["quick"] is True


def test_values_are_converted_to_their_type():
    rp = declared("recall")
    assert rp.validate({"templates": 5}) == {"templates": [5]}  # was a TypeError deep in the run
    assert rp.validate({"templates": "0,3"}) == {"templates": [0, 3]}
    assert rp.validate({"batch_size": "16"}) == {"batch_size": 16}
    assert rp.validate({"mitigation_scale": 1}) == {"mitigation_scale": 1.0}
    assert rp.validate({"max_facts": None}) == {"max_facts": None}
    assert rp.validate({"relations": "country_capital,city_country"}) == {"relations": ["country_capital", "city_country"]}
    assert declared("rome").validate({"cov_cache": "false"}) == {"cov_cache": False}
    with pytest.raises(InterpError, match=r"^--set max_facts=0: too small; allowed: an integer >= 2, or null \(all facts\)$"):
        rp.validate({"max_facts": 0})
    with pytest.raises(InterpError, match="batch_size='abc': not a number"):
        rp.validate({"batch_size": "abc"})
    with pytest.raises(InterpError, match="null is not allowed"):
        rp.validate({"shots": None})
    with pytest.raises(InterpError, match="not an integer"):
        rp.validate({"shots": 1.5})
    with pytest.raises(InterpError, match="batch_size=true: not allowed; allowed: an integer >= 1"):
        rp.validate({"batch_size": True})
    with pytest.raises(InterpError, match="cov_cache='maybe'.*allowed: true or false"):
        declared("rome").validate({"cov_cache": "maybe"})


def test_model_bounds():
    class M:
        spec, n_layers, n_heads = "m", 4, 2

    rp = declared("recall")
    vals = rp.effective({"top_k_heads": 7}, False)
    with pytest.raises(InterpError, match=r"top_k_heads=7: too large for m; allowed: at most 6"):
        rp.check_model(vals, M())
    rp.check_model(rp.effective({"top_k_heads": 6}, False), M())


def test_help_table_rows():
    ps = Params("demo", [Param("n", "int", 3, quick=1, min=1, max=9, unit="things", help="how many"),
                         Param("mode", "choice", "a", choices=["a", "b"], help="which")])
    rows = ps.help_table().splitlines()
    n = next(r for r in rows if r.split()[0] == "n")
    assert n.split()[:5] == ["n", "int", "3", "1", "1..9"] and "how many [things]" in n
    assert next(r for r in rows if r.split()[0] == "mode").split()[:5] == ["mode", "choice", "a", "=", "a|b"]
    with pytest.raises(ValueError):
        Params("demo", [Param("n", "int", 1), Param("n", "int", 2)])
