"""Stand-ins for the core data sources (token counts, natural text, country facts) on tiny models."""

from dataclasses import dataclass

import pytest
import torch

from interp.recall import sources

TEXTS = ["The capital of France is Paris, a large city on the Seine.", "Gold has the chemical symbol Au.",
         "Berlin is the capital and the largest city of Germany.", "Water boils at one hundred degrees.",
         "The euro is the currency of many countries in Europe."]


@dataclass
class FakeFrequency:
    counts: torch.Tensor
    occurs: torch.Tensor
    source: str = "fake-counts"

    @property
    def probs(self):
        return self.counts / self.counts.sum()


def fake_frequency(model, source="wikipedia"):
    counts = torch.zeros(model.d_vocab, dtype=torch.float64)
    for ids in model.encode(TEXTS * 3, prepend_bos=False):
        counts += torch.bincount(torch.tensor(ids), minlength=model.d_vocab)[: model.d_vocab].double()
    return FakeFrequency(counts, counts > 0, f"fake:{source}")


COUNTRY_FACTS = [{"relation": "country_capital", "subject": s, "answer": a} for s, a in
                 [("Peru", "Lima"), ("Chile", "Santiago"), ("Kenya", "Nairobi"), ("Nepal", "Kathmandu")]] + \
                [{"relation": "country_continent", "subject": s, "answer": a} for s, a in [("Peru", "South America"), ("Kenya", "Africa")]]


@pytest.fixture
def fake_sources(monkeypatch):
    monkeypatch.setattr(sources, "token_frequency", fake_frequency)
    monkeypatch.setattr(sources, "texts", lambda corpus="wikipedia", split="all": (list(TEXTS[:3] if split == "train" else TEXTS[3:]),
                                                                                  f"fake-{corpus}"))
    monkeypatch.setattr(sources, "independent_facts", lambda: list(COUNTRY_FACTS))
    return sources
