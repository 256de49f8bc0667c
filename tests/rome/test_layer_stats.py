import pytest
import torch

import interp
from interp.errors import InterpError
from interp.rome.compute_u import key_hook
from interp.rome.layer_stats import (
    inverse_convergence, inverse_covariance, layer_stats, load_corpus, snapshot_counts, stats_key,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    return tmp_path


def test_second_moment_matches_direct_computation_and_caches(tiny_models, cache):
    m = tiny_models["gpt2"]
    st = layer_stats(m, 1, "generic", n_samples=12, max_tokens=40, batch_size=5)
    assert not st.cached and st.path.is_file() and str(st.path).startswith(str(cache))
    toks = load_corpus(m, "generic", 12, 40).tokens
    ks = interp.capture(m, toks, hooks=[key_hook(1)], positions="all").acts[key_hook(1)]
    k = torch.cat(ks).double()
    torch.testing.assert_close(st.mom2, k.T @ k / len(k))
    assert st.n_tokens == len(k) and st.n_samples == 12
    assert sorted(st.snapshots) == snapshot_counts(12)
    again = layer_stats(m, 1, "generic", n_samples=12, max_tokens=40)
    assert again.cached and torch.equal(again.mom2, st.mom2)
    other = layer_stats(m, 1, "generic", n_samples=6, max_tokens=40)
    assert not other.cached and other.path != st.path
    torch.testing.assert_close(other.mom2.float(), st.snapshots[6])


def test_key_names_what_the_statistic_came_from(tiny_models, cache):
    m = tiny_models["llama"]
    k = stats_key(m, 2, "model", 100, 64, seed=3)
    assert k["layer"] == 2 and k["n_samples"] == 100 and k["weight_hash"] == m.weight_hash
    assert k["corpus"] == "model-sampled-v1:seed3" and k["dtype"] == "float32"


def test_model_sampled_corpus_and_convergence(tiny_models, cache):
    m = tiny_models["llama"]
    st = layer_stats(m, 0, "model", n_samples=16, max_tokens=24)
    assert "sampled from the model" in st.description and st.n_tokens == 16 * 24
    probe = torch.randn(3, m.d_mlp)
    rows = inverse_convergence(st, probe, ridge=1e-3)
    assert rows[-1]["n_samples"] == 16 and rows[-1]["inverse_rel_change"] < 1e-5
    assert rows[-1]["direction_cosine_min"] > 0.9999
    assert rows[0]["inverse_rel_change"] > rows[-1]["inverse_rel_change"]


def test_corpus_errors(tiny_models, cache, tmp_path):
    m = tiny_models["llama"]
    with pytest.raises(InterpError):
        layer_stats(m, 0, str(tmp_path / "nope.txt"), 4, 16)
    with pytest.raises(InterpError):
        layer_stats(m, 0, "generic", 0, 16)
    f = tmp_path / "c.txt"
    f.write_text("A first paragraph of user text, long enough.\n\nAnd a second one, also long enough here.")
    st = layer_stats(m, 0, str(f), 8, 16)
    assert st.n_samples == 2 and st.key["corpus"].startswith("file:c.txt")
    with pytest.raises(InterpError):
        inverse_covariance(torch.zeros(4, 4))


def test_cache_is_safetensors_with_a_json_key_and_never_unpickled(tiny_models, cache):
    import json
    import pickle

    m = tiny_models["gpt2"]
    st = layer_stats(m, 1, "generic", n_samples=4, max_tokens=16)
    assert st.path.suffix == ".safetensors" and not list(cache.rglob("*.pt"))
    meta = json.loads(st.path.with_suffix(".json").read_text())
    assert meta["key"] == st.key and meta["n_tokens"] == st.n_tokens
    again = layer_stats(m, 1, "generic", n_samples=4, max_tokens=16)
    assert again.cached and again.snapshot_tokens == st.snapshot_tokens and sorted(again.snapshots) == sorted(st.snapshots)
    # a tampered tensor file (digest differs) is recomputed, not parsed
    st.path.write_bytes(st.path.read_bytes()[:-8] + b"\0" * 8)
    assert not layer_stats(m, 1, "generic", n_samples=4, max_tokens=16).cached
    # a planted old-style pickle beside it is never read
    marker = cache / "pwned"

    class Boom:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    st.path.with_suffix(".pt").write_bytes(pickle.dumps({"key": st.key, "x": Boom()}))
    assert layer_stats(m, 1, "generic", n_samples=4, max_tokens=16).cached and not marker.exists()
