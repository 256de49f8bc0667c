"""Tiny random models of every supported family, built in code from HF configs (no download).

Used by the tests (structure and parity with the HF forward pass) and the benchmarks. The
tokenizer is byte-level (every string encodes), with ``<|endoftext|>`` as BOS/EOS/pad.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from functools import lru_cache
from typing import Any, Callable, Optional

import torch

from interp.loading import cache_dir, mixed_precision
from interp.model import Model, wrap_hf_model

TINY_VOCAB = 300
TINY_FAMILIES = ("gpt2", "gptj", "opt", "gpt_neox", "llama", "gemma3", "qwen2")


def _configs() -> dict[str, tuple[str, Callable[[], Any]]]:
    import transformers as T

    common = dict(vocab_size=TINY_VOCAB, bos_token_id=256, eos_token_id=256, pad_token_id=256)
    return {
        "gpt2": ("GPT2LMHeadModel", lambda: T.GPT2Config(n_layer=3, n_head=4, n_embd=64, n_positions=256, **common)),
        "gptj": ("GPTJForCausalLM", lambda: T.GPTJConfig(n_layer=3, n_head=4, n_embd=64, n_positions=256, rotary_dim=8, **common)),
        "opt": ("OPTForCausalLM", lambda: T.OPTConfig(num_hidden_layers=3, num_attention_heads=4, hidden_size=64, ffn_dim=128,
                                                     max_position_embeddings=256, word_embed_proj_dim=64, **common)),
        "gpt_neox": ("GPTNeoXForCausalLM", lambda: T.GPTNeoXConfig(num_hidden_layers=3, num_attention_heads=4, hidden_size=64,
                                                                   intermediate_size=128, max_position_embeddings=256, **common)),
        "llama": ("LlamaForCausalLM", lambda: T.LlamaConfig(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                                           hidden_size=64, intermediate_size=128, max_position_embeddings=256, **common)),
        "gemma3": ("Gemma3ForCausalLM", lambda: T.Gemma3TextConfig(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                                                   hidden_size=64, intermediate_size=128, head_dim=16,
                                                                   max_position_embeddings=256, sliding_window=16,
                                                                   # sliding (local rotary) layers, then a global one, as Gemma 3
                                                                   layer_types=["sliding_attention", "sliding_attention",
                                                                                "full_attention"], **common)),
        # Qwen2: grouped-query attention with QKV biases and an untied unembedding, as Qwen2.5
        "qwen2": ("Qwen2ForCausalLM", lambda: T.Qwen2Config(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                                           hidden_size=64, intermediate_size=128, max_position_embeddings=256,
                                                           tie_word_embeddings=False, **common)),
    }


@lru_cache(maxsize=1)
def byte_tokenizer() -> Any:
    """A byte-level tokenizer of 257 tokens (256 bytes + ``<|endoftext|>`` = 256)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    # the bridge re-opens tokenizers by name_or_path, so give this one a folder (made once)
    folder = cache_dir() / "tokenizers" / "byte-level-v1"
    if not (folder / "tokenizer.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="byte-level-", dir=folder.parent))
        fast.save_pretrained(tmp)
        try:
            tmp.replace(folder)
        except OSError:  # another process made it first
            shutil.rmtree(tmp, ignore_errors=True)
    return AutoTokenizer.from_pretrained(folder)


def tiny_hf_model(family: str, seed: int = 0) -> Any:
    """A randomly initialised HF causal LM of ``family`` (3 layers, 4 heads, d_model 64)."""
    import transformers as T

    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; one of {TINY_FAMILIES}")
    arch, make = _configs()[family]
    cfg = make()
    cfg.architectures = [arch]
    torch.manual_seed(seed)
    model = getattr(T, arch)(cfg)
    # random init gives near-uniform outputs; widen weights so tests see real structure
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "norm" not in name and "ln" not in name:
                p.mul_(3.0)
    return model.eval()


def tiny_model(family: str, seed: int = 0, numerics: str = "hf", dtype: Optional[torch.dtype] = None,
               precision: str = "mixed") -> Model:
    """A tiny random model of ``family`` behind the same :class:`Model` handle as real ones; with a
    low ``dtype``, its weights in that dtype under ``precision`` (``"mixed"``:
    :func:`interp.loading.mixed_precision`; ``"pure"``: everything in ``dtype``), as ``load_model``
    gives them."""
    if precision not in ("mixed", "pure"):
        raise ValueError(f"precision must be 'mixed' or 'pure', not {precision!r}")
    hf = tiny_hf_model(family, seed)
    if dtype is not None and dtype != torch.float32:
        hf = hf.to(dtype)
    m = wrap_hf_model(hf, byte_tokenizer(), spec=f"tiny-{family}", numerics=numerics, prepend_bos=True)
    if dtype is not None and dtype != torch.float32 and precision == "mixed":
        mixed_precision(m.hf_model, dtype)
    return m
