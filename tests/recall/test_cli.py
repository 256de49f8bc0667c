import io

import pytest

from interp.cli import main
from interp.errors import InterpError
from interp.recall.cli import ablate_final_heads


def test_given_heads_print_the_table(tiny_models, fake_sources):
    """Test and independent facts, zero- and few-shot, and the held-out perplexity, before and after:
    the numbers mitigation_table and perplexities give for those heads."""
    from interp.recall.mitigation import Mitigation, perplexities

    m = tiny_models["gpt2"]
    out = io.StringIO()
    assert ablate_final_heads(m, heads="2.0,2.1", quick=True, relations=["country_capital"], shots=2, out=out) == 0
    lines = out.getvalue().splitlines()
    assert "2.0, 2.1" in lines[0]
    rows = {tuple(l.split()[:2]): l.split()[2:] for l in lines if l.split()[:1] in (["test"], ["independent"])}
    assert set(rows) == {("test", "zero-shot"), ("test", "2-shot"), ("independent", "zero-shot"), ("independent", "2-shot")}
    texts = fake_sources.texts("wikipedia", "heldout")[0][:8]
    base, after = perplexities(m, texts, [Mitigation(), Mitigation("heads", [(2, 0), (2, 1)])])
    assert f"{base:.3f} before, {after:.3f} after" in lines[-2]
    assert base != after  # the heads change the text's perplexity, so a line printing one number twice would fail


def test_auto_reports_the_mitigations_choice(tiny_models, fake_sources):
    from interp.recall.mitigation import auto_mitigation

    m = tiny_models["llama"]
    out = io.StringIO()
    assert ablate_final_heads(m, heads="auto", quick=True, relations=["element_symbol"], out=out) == 0
    chosen = auto_mitigation(m, "auto", quick=True, shots=3, relations=["element_symbol"])
    assert "chosen on train facts" in out.getvalue() and chosen.describe() in out.getvalue()


def test_bad_heads_are_one_line_errors(tiny_models, capsys):
    with pytest.raises(InterpError, match="LAYER.HEAD"):
        ablate_final_heads(tiny_models["llama"], heads="last")
    assert main(["ablate-final-heads", "--model", "smollm2-135m", "--heads", "29.99"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "head out of range" in err[-1]
