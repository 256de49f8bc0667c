"""Token frequencies for a model's vocabulary, from real text.

Sources (the one used is recorded in every result as ``frequency_source``):

* ``"wikipedia"`` (default): the model's own tokens counted over the ``train`` split of the
  packaged English Wikipedia text (:func:`interp.corpus.wikipedia_texts`), each article tokenised
  without special tokens. Cached per tokenizer (a hash of its vocabulary) as safetensors.
* ``"wordfreq"``: word frequencies of the ``wordfreq`` package (Wikipedia, subtitles, news, books,
  web, Reddit, Twitter combined) mapped onto tokens: a word-initial token (its text starts with a
  space) whose text, stripped and lower-cased, is a word ``wordfreq`` knows gets that word's
  frequency; word pieces and other tokens get 0 (they do not "occur" in this source).
* ``"model"``: the model's own mean next-token distribution over the project's generic paragraphs
  (an estimate, not a count; only when asked).
* a path to a text file or folder: the model's tokens counted over it.

Correlations with frequency should be taken over the tokens that occur (:attr:`TokenFrequency.occurs`),
with a rank statistic: most of a vocabulary never occurs in any corpus of this size.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from jaxtyping import Bool, Float

from interp import corpus as corpus_mod
from interp.errors import InterpError
from interp.loading import cache_dir
from interp.model import Model

SOURCES = ("wikipedia", "wordfreq", "model")
SOURCE_ALLOWS = "wikipedia, wordfreq, model or a text file/folder"  # what a source setting allows, in errors


@dataclass
class TokenFrequency:
    """Counts (or estimated mass) per token id, and where they come from.

    Attributes:
        counts: float64 ``[d_vocab]``: occurrences (or, for ``model``, expected occurrences).
        source: ``wikipedia``, ``wordfreq``, ``model:interp-generic-v1`` or ``file:NAME``.
        n_tokens: how many corpus tokens were counted (0 for ``wordfreq``).
    """

    counts: Float[torch.Tensor, "d_vocab"]
    source: str
    n_tokens: int = 0

    @property
    def probs(self) -> Float[torch.Tensor, "d_vocab"]:
        """Relative frequency of each token (sums to 1)."""
        total = float(self.counts.sum())
        return self.counts / total if total > 0 else self.counts.clone()

    @property
    def occurs(self) -> Bool[torch.Tensor, "d_vocab"]:
        """Tokens seen at least once in the source."""
        return self.counts > 0

    @property
    def log_probs(self) -> Float[torch.Tensor, "d_vocab"]:
        """Log relative frequency; tokens that never occur get the smallest observed value minus 1."""
        p = self.probs
        out = torch.full_like(p, float("nan"))
        seen = p > 0
        if seen.any():
            out[seen] = p[seen].log()
            out[~seen] = out[seen].min() - 1.0
        return out


def tokenizer_key(model: Model) -> str:
    """A short hash identifying the tokenizer's vocabulary (frequencies are cached under it)."""
    vocab = model.tokenizer.get_vocab()
    h = hashlib.sha256(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode("utf-8"))
    h.update(str(model.d_vocab).encode())
    return h.hexdigest()[:16]


def count_tokens(model: Model, texts: Sequence[str]) -> tuple[Float[torch.Tensor, "d_vocab"], int]:
    """Occurrences of each token id over ``texts`` (tokenised without special tokens)."""
    counts = torch.zeros(model.d_vocab, dtype=torch.float64)
    n = 0
    batch = 256
    for a in range(0, len(texts), batch):
        enc = model.tokenizer(list(texts[a : a + batch]), add_special_tokens=False)["input_ids"]
        flat = torch.tensor([i for ids in enc for i in ids if 0 <= i < model.d_vocab], dtype=torch.long)
        counts += torch.bincount(flat, minlength=model.d_vocab).to(torch.float64)[: model.d_vocab]
        n += int(flat.numel())
    return counts, n


def wordfreq_counts(model: Model) -> Float[torch.Tensor, "d_vocab"]:
    """``wordfreq``'s English word frequencies mapped onto whole-word tokens (see module docstring)."""
    try:
        import wordfreq
    except ImportError:
        raise InterpError("frequency_source=wordfreq needs the wordfreq package: `pip install wordfreq`") from None
    table = wordfreq.get_frequency_dict("en", wordlist="best")
    counts = torch.zeros(model.d_vocab, dtype=torch.float64)
    strings = model.tokenizer.convert_ids_to_tokens(list(range(min(model.d_vocab, len(model.tokenizer)))))
    for i, piece in enumerate(strings):
        if piece is None:
            continue
        text = model.tokenizer.convert_tokens_to_string([piece])
        if not text.startswith(" "):
            continue
        text = text.strip().lower()
        if text and text in table:
            counts[i] = table[text]
    return counts


def model_counts(model: Model, texts: Sequence[str], max_tokens: int = 256) -> tuple[Float[torch.Tensor, "d_vocab"], int]:
    """The model's summed next-token distribution over ``texts`` (expected counts)."""
    from interp.capture import capture

    toks = [t[:max_tokens] for t in model.encode(list(texts))]
    toks = [t for t in toks if len(t) >= 2]
    if not toks:
        raise InterpError("no text of at least 2 tokens for the model-based frequency estimate")
    total = torch.zeros(model.d_vocab, dtype=torch.float64)
    n = 0
    for a in range(0, len(toks), 8):
        chunk = toks[a : a + 8]
        cap = capture(model, chunk, positions="all", logits=True, batch_size=8, progress=False)
        for row, ids in enumerate(chunk):
            probs = cap.logits[row][: len(ids)].double().softmax(-1)  # positions='all': one tensor per text
            total += probs[:, : model.d_vocab].sum(0)
            n += len(ids)
    return total, n


def _cache_file(model: Model, source_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in source_id)
    return cache_dir() / "frequency" / f"{tokenizer_key(model)}-{safe}.safetensors"


def source_problem(source: str) -> str | None:
    """What is wrong with a frequency source before any text is read (None: nothing); the check
    :func:`token_frequency` makes, for options and parameters to make before a model loads."""
    return corpus_mod.corpus_problem(source, named=SOURCES)


def token_frequency(model: Model, source: str = "wikipedia") -> TokenFrequency:
    """Token frequencies of ``model``'s vocabulary from ``source`` (see module docstring).

    Args:
        model: the model whose tokenizer defines the tokens.
        source: ``"wikipedia"``, ``"wordfreq"``, ``"model"`` or a path to a text file or folder.

    Returns:
        A :class:`TokenFrequency`; corpus counts are cached per tokenizer and source.
    """
    from safetensors.torch import load_file, save_file

    if source == "wordfreq":
        return TokenFrequency(wordfreq_counts(model), "wordfreq", 0)
    if source == "model":
        texts = corpus_mod.generic_texts()
        counts, n = model_counts(model, texts)
        return TokenFrequency(counts, f"model:{corpus_mod.GENERIC_ID}", n)
    if source == "wikipedia":
        texts, source_id = corpus_mod.wikipedia_texts("train"), corpus_mod.WIKIPEDIA_ID
    else:
        why = source_problem(source)
        if why:
            raise InterpError(f"frequency source {source!r}: {why}; allowed: {SOURCE_ALLOWS}")
        texts, source_id = corpus_mod.natural_texts(source)
    path = _cache_file(model, source_id + ("" if source == "wikipedia" else f"-{len(texts)}"))
    if path.is_file():
        data = load_file(str(path))
        return TokenFrequency(data["counts"], source_id, int(data["n_tokens"].item()))
    counts, n = count_tokens(model, texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file({"counts": counts, "n_tokens": torch.tensor([n])}, str(tmp), metadata={"source": source_id})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return TokenFrequency(counts, source_id, n)
