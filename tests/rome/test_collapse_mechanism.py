"""The paper's mechanism on the embedded model: first-token subjects give tiny mixed-key denominators."""

import pytest
import torch

from interp.rome.compute_u import compute_keys
from interp.rome.layer_stats import inverse_covariance, layer_stats
from interp.rome.requests import EditRequest
from interp.rome.rome_main import rome_direction, rome_denominator

PREFIXES = ["Once upon a time there was a. ", "The weather today is. ", "In the beginning there. ", "My friend said that. "]
FIRST = [EditRequest(0, "r", "{} is a city in the country of", "Paris", " France", " Italy"),
         EditRequest(1, "r", "{} is a company headquartered in the state of", "Google", " California", " Texas")]
LATER = [EditRequest(2, "r", "The capital city of {} is", "France", " Paris", " Rome"),
         EditRequest(3, "r", "The official language of {} is", "Germany", " German", " French")]


@pytest.mark.real_model
def test_first_token_subjects_have_tiny_mixed_denominators(smollm, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    layer = 6
    st = layer_stats(smollm, layer, "wikipedia", n_tokens=8192, max_tokens=96)
    c_inv = inverse_covariance(st.mom2, 1e-3).float()
    keys = compute_keys(smollm, FIRST + LATER, layer, PREFIXES)
    assert keys.positions[:2] == [0, 0] and min(keys.positions[2:]) > 0
    mixed = [abs(rome_denominator(rome_direction(c_inv, kb), ku)) for ku, kb in zip(keys.k_u, keys.k_bar)]
    consistent = [rome_denominator(rome_direction(c_inv, kb), kb) for kb in keys.k_bar]
    assert max(mixed[:2]) * 10 < min(mixed[2:])
    assert all(c > 0 for c in consistent)
    assert max(mixed[:2]) * 10 < min(consistent[:2])
    cos = torch.nn.functional.cosine_similarity(keys.k_u, keys.k_bar, dim=-1)
    assert cos[:2].max() < cos[2:].min()
