"""The packaged natural text: Wikipedia splits, the generic paragraphs, a user's file."""

import pytest

from interp import corpus
from interp.errors import InterpError


def test_wikipedia_splits_are_disjoint_and_cover_all():
    everything = corpus.wikipedia_texts("all")
    train, held = corpus.wikipedia_texts("train"), corpus.wikipedia_texts("heldout")
    assert len(everything) == 10_033
    assert len(train) + len(held) == len(everything)
    assert 0.07 < len(held) / len(everything) < 0.13
    assert not set(train) & set(held)


def test_heldout_is_a_fixed_function_of_the_title():
    assert corpus.is_heldout("Paris") == corpus.is_heldout("Paris")
    flags = [corpus.is_heldout(f"title {i}") for i in range(2000)]
    assert 150 < sum(flags) < 250


def test_natural_texts_ids(tmp_path):
    assert corpus.natural_texts("wikipedia")[1] == "wikipedia"
    assert corpus.natural_texts("wikipedia", "heldout")[1] == "wikipedia:heldout"
    assert corpus.natural_texts("generic")[1] == corpus.GENERIC_ID
    f = tmp_path / "mine.txt"
    f.write_text("A first paragraph of my own text.\n\nA second paragraph of my own text.")
    texts, cid = corpus.natural_texts(f)
    assert cid == "file:mine.txt" and len(texts) == 2


def test_bad_split_is_one_line():
    with pytest.raises(InterpError, match="split"):
        corpus.wikipedia_texts("test")


def test_corpus_problem_agrees_with_what_reading_does(tmp_path):
    """The check made before a model loads accepts what natural_texts reads and names what it would fail on."""
    f = tmp_path / "mine.txt"
    f.write_text("A first paragraph of my own text.")
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts" / "deep").mkdir(parents=True)
    (tmp_path / "texts" / "deep" / "a.txt").write_text("A paragraph in a nested folder of texts.")
    for ok in ("wikipedia", "generic", str(f), str(tmp_path / "texts")):
        assert corpus.corpus_problem(ok) is None, ok
        corpus.natural_texts(ok)
    for bad, words in ((str(tmp_path / "missing.txt"), "no file or folder"), (str(tmp_path / "empty"), "no .txt files"),
                       ("wikipedai", "no corpus of that name")):
        assert words in corpus.corpus_problem(bad), bad
        with pytest.raises(InterpError):
            corpus.natural_texts(bad)
    assert corpus.corpus_problem("model") is not None  # a name only some callers accept
    assert corpus.corpus_problem("model", named=("model",)) is None
    assert corpus.corpus_problem("hf:wikitext:wikitext-2-raw-v1", hub=True) is None
    assert "dataset name" in corpus.corpus_problem("hf:", hub=True)
    assert corpus.corpus_problem("hf:wikitext") is not None  # no hub here: a path that does not exist
