import pytest
import torch

import interp
from interp.errors import InterpError
from interp.rome.compute_u import key_hook
from interp.rome.layer_stats import (
    identity_stats, inverse_convergence, inverse_covariance, layer_stats, snapshot_marks, stats_key, token_stream,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    return tmp_path


def test_second_moment_matches_direct_computation_and_caches(tiny_models, cache):
    m = tiny_models["gpt2"]
    st = layer_stats(m, 1, "generic", n_tokens=300, max_tokens=40, batch_size=5)
    assert not st.cached and st.path.is_file() and str(st.path).startswith(str(cache)) and st.path.suffix == ".safetensors"
    assert not list(cache.rglob("*.pt"))
    toks = list(token_stream(m, "generic", 300, 40))
    assert sum(map(len, toks)) == 300
    ks = interp.capture(m, toks, hooks=[key_hook(1)], positions="all").acts[key_hook(1)]
    k = torch.cat(ks).double()
    torch.testing.assert_close(st.mom2, k.T @ k / len(k))
    assert st.n_tokens == 300 == len(k)
    # snapshots at text boundaries at or past each halving mark; the last is the full statistic
    assert max(st.snapshots) == 300 and len(st.snapshots) >= 4
    for n in st.snapshots:
        assert any(m_ <= n for m_ in snapshot_marks(300))
    again = layer_stats(m, 1, "generic", n_tokens=300, max_tokens=40)
    assert again.cached and torch.equal(again.mom2, st.mom2) and sorted(again.snapshots) == sorted(st.snapshots)
    other = layer_stats(m, 1, "generic", n_tokens=150, max_tokens=40)
    assert not other.cached and other.path != st.path


def test_key_names_what_the_statistic_came_from(tiny_models, cache):
    m = tiny_models["llama"]
    k = stats_key(m, 2, "model", 1000, 64, seed=3)
    assert k["layer"] == 2 and k["n_tokens"] == 1000 and k["weight_hash"] == m.weight_hash
    assert k["corpus"] == "model-sampled-v1:seed3" and k["dtype"] == "float32"


def test_identity_variant(tiny_models):
    m = tiny_models["llama"]
    st = layer_stats(m, 0, "identity")
    assert st.key["corpus"] == "identity" and torch.equal(st.mom2, torch.eye(m.d_mlp, dtype=torch.float64))
    assert st.path is None and inverse_convergence(st, torch.randn(2, m.d_mlp)) == []
    assert identity_stats(m, 0).n_tokens == 0


def test_model_sampled_corpus_and_convergence(tiny_models, cache):
    m = tiny_models["llama"]
    st = layer_stats(m, 0, "model", n_tokens=16 * 24, max_tokens=24)
    assert "sampled from the model" in st.description and st.n_tokens == 16 * 24
    probe = torch.randn(3, m.d_mlp)
    rows = inverse_convergence(st, probe, ridge=1e-3)
    assert rows[-1]["n_tokens"] == 16 * 24 and rows[-1]["mom2_rel_change"] < 1e-6
    assert rows[-1]["direction_cosine_min"] > 0.9999 and rows[-1]["condition_number"] > 1
    assert rows[0]["mom2_rel_change"] > rows[-1]["mom2_rel_change"]
    assert rows[0]["direction_cosine_mean"] < 0.9999


def test_corpus_errors(tiny_models, cache, tmp_path):
    m = tiny_models["llama"]
    with pytest.raises(InterpError):
        layer_stats(m, 0, str(tmp_path / "nope.txt"), 4, 16)
    with pytest.raises(InterpError):
        layer_stats(m, 0, "generic", 0, 16)
    f = tmp_path / "c.txt"
    f.write_text("A first paragraph of user text, long enough.\n\nAnd a second one, also long enough here.")
    st = layer_stats(m, 0, str(f), 100, 16)
    assert st.n_samples == 2 and st.key["corpus"].startswith("file:c.txt")
    with pytest.raises(InterpError):
        inverse_covariance(torch.zeros(4, 4))


def test_cache_is_safetensors_with_a_json_key_and_never_unpickled(tiny_models, cache):
    import json
    import pickle

    m = tiny_models["gpt2"]
    st = layer_stats(m, 1, "generic", n_tokens=60, max_tokens=16)
    assert st.path.suffix == ".safetensors" and not list(cache.rglob("*.pt"))
    meta = json.loads(st.path.with_suffix(".json").read_text())
    assert meta["key"] == st.key and meta["n_tokens"] == st.n_tokens
    again = layer_stats(m, 1, "generic", n_tokens=60, max_tokens=16)
    assert again.cached and sorted(again.snapshots) == sorted(st.snapshots) and torch.equal(again.mom2, st.mom2)
    # a tampered tensor file (digest differs) is recomputed, not parsed
    st.path.write_bytes(st.path.read_bytes()[:-8] + b"\0" * 8)
    assert not layer_stats(m, 1, "generic", n_tokens=60, max_tokens=16).cached
    # a planted old-style pickle beside it is never read
    marker = cache / "pwned"

    class Boom:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    st.path.with_suffix(".pt").write_bytes(pickle.dumps({"key": st.key, "x": Boom()}))
    assert layer_stats(m, 1, "generic", n_tokens=60, max_tokens=16).cached and not marker.exists()
