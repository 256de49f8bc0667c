"""The model handle every analysis takes: one vocabulary for every family.

``load_model(spec)`` returns a :class:`Model`, a thin wrapper over TransformerLens's
``TransformerBridge``. Analyses speak in the bridge's hook names (``blocks.{L}.attn.hook_pattern``,
``blocks.{L}.mlp.hook_post``, ...) and in the handle's properties (``n_layers``, ``W_U``, ``W_O``),
never in one family's module paths.

Numerics modes (recorded in every result):

* ``"hf"`` (default): the raw Hugging Face weights; logits equal the plain HF forward pass.
* ``"tl"``: TransformerLens-compatible processed weights (layer norms folded, writing weights and
  the unembedding centred), as ``HookedTransformer`` used to load them. Logits then differ from HF
  by a per-position constant, so softmax probabilities are unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
import time
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from jaxtyping import Float, Int

from interp.errors import InterpError
from interp import gemm, loading

NUMERICS = ("hf", "tl")


class Model:
    """A loaded causal LM behind a TransformerBridge, with family-independent accessors.

    Attributes:
        bridge: the ``TransformerBridge``. The handle itself behaves like a TransformerLens model:
            ``model(tokens)`` returns logits, and :meth:`run_with_cache`, :meth:`run_with_hooks`,
            :meth:`generate`, :meth:`to_string` and :attr:`cfg` pass through to the bridge with this
            project's tokenisation policy (:meth:`tokens`).
        hf_model: the underlying Hugging Face model (its weights are the bridge's weights).
        tokenizer: the Hugging Face tokenizer.
        spec: the spec string the model was loaded from.
        family: ``llama``, ``gpt2``, ``gptj``, ``opt``, ``gpt_neox``, ``gemma3``, ...
        architecture: the HF architecture class name.
        numerics: ``"hf"`` or ``"tl"`` (see module docstring).
        prepend_bos: the default BOS policy of :meth:`encode` for this model: the registry's entry
            (what the model was trained with), else what the tokenizer itself does (Gemma adds
            ``<bos>``; Qwen2 and SmolLM2 add nothing, and a prepended ``<|endoftext|>`` breaks Qwen).
    """

    def __init__(
        self,
        bridge: Any,
        tokenizer: Any,
        *,
        spec: str,
        numerics: str = "hf",
        prepend_bos: Optional[bool] = None,
        chat: bool = False,
        weight_hash: str = "",
        source: Optional[dict[str, Any]] = None,
        load_seconds: float = 0.0,
        precision: str = "",
    ) -> None:
        self.bridge = bridge
        self.hf_model = bridge.original_model
        self.tokenizer = tokenizer
        self.spec = spec
        self.architecture = (getattr(self.hf_model.config, "architectures", None) or [type(self.hf_model).__name__])[0]
        self.family = loading.family_of(self.architecture)
        self.numerics = numerics
        self.chat = chat
        self.source = source or {}
        self.load_seconds = load_seconds
        self.precision = precision or self.weights_dtype
        self._weight_hash = weight_hash
        cfg = bridge.cfg
        self.n_layers: int = int(cfg.n_layers)
        self.n_heads: int = int(cfg.n_heads)
        self.n_kv_heads: int = int(getattr(cfg, "n_key_value_heads", None) or cfg.n_heads)
        self.d_model: int = int(cfg.d_model)
        self.d_head: int = int(cfg.d_head)
        self.d_mlp: int = self._mlp_width(int(cfg.d_mlp))
        self.d_vocab: int = int(cfg.d_vocab)
        self.gated_mlp: bool = bool(getattr(cfg, "gated_mlp", False))
        bos = tokenizer.bos_token_id
        if bos is None:
            bos = getattr(self.hf_model.config, "bos_token_id", None)
        self.bos_token_id: Optional[int] = bos
        if prepend_bos is None:
            prepend_bos = loading.tokenizer_adds_bos(tokenizer)
        self.prepend_bos: bool = bool(prepend_bos) and bos is not None
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_token_id: int = int(pad)
        self._has_pattern_hook: Optional[bool] = None
        self.hf_model.eval()
        gemm.install(self.hf_model)  # its linear layers multiply through interp.gemm's backend

    def _mlp_width(self, fallback: int) -> int:
        """The MLP hidden width, read off the output projection (the bridge's cfg is wrong for OPT)."""
        try:
            out = self.bridge.blocks[0].mlp.out
        except (AttributeError, IndexError):
            return fallback
        mod = getattr(out, "original_component", out)
        if isinstance(mod, torch.nn.Linear):
            return int(mod.in_features)
        if type(mod).__name__ == "Conv1D":
            return int(mod.weight.shape[0])
        return fallback

    # ------------------------------------------------------------------ identity
    def __repr__(self) -> str:
        return (
            f"Model({self.spec!r}, family={self.family}, layers={self.n_layers}, heads={self.n_heads}"
            f"/{self.n_kv_heads}kv, d_model={self.d_model}, numerics={self.numerics})"
        )

    @property
    def has_pattern_hook(self) -> bool:
        """Whether ``blocks.L.attn.hook_pattern`` fires (the OPT bridge registers it but never calls it)."""
        if self._has_pattern_hook is None:
            fired = []
            with torch.no_grad(), self.bridge.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", lambda x, hook: fired.append(1))]):
                self.bridge(torch.tensor([[self.pad_token_id, self.pad_token_id]], device=self.device), logits_to_keep=1)
            self._has_pattern_hook = bool(fired)
        return self._has_pattern_hook

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The residual stream's dtype (the input embeddings'): what inputs to blocks are cast to."""
        return next(self.hf_model.parameters()).dtype

    @property
    def weights_dtype(self) -> str:
        """The dtype the model was loaded in: its narrowest weights' (``bfloat16`` for a mixed-precision
        model, whose stream, norms and attention scores are float32: :func:`interp.loading.mixed_precision`)."""
        dts = {p.dtype for p in self.hf_model.parameters() if p.dtype.is_floating_point}
        return str(min(dts, key=lambda d: d.itemsize) if dts else self.dtype).replace("torch.", "")

    @property
    def weight_hash(self) -> str:
        """A SHA-256 identifying the weights (the GGUF file's hash, or a hash of the tensors)."""
        if not self._weight_hash:
            h = hashlib.sha256()
            for name, p in sorted(self.hf_model.state_dict().items()):
                h.update(name.encode())
                t = p.detach().to("cpu").contiguous()
                flat = t.reshape(-1)
                if flat.numel() > 1 << 20:  # large tensors: a fixed strided sample
                    flat = flat[:: flat.numel() // (1 << 20)]
                h.update(flat.float().numpy().tobytes())
            self._weight_hash = f"tensor-sha256:{h.hexdigest()}"
        return self._weight_hash

    def describe(self) -> dict[str, Any]:
        """Everything a manifest needs to say which model made a result."""
        return {
            "spec": self.spec,
            "architecture": self.architecture,
            "family": self.family,
            "weight_hash": self.weight_hash,
            "numerics": self.numerics,
            "dtype": self.weights_dtype,
            "precision": self.precision,
            "device": str(self.device),
            **({"cpu_gemm": gemm.backend()} if self.device.type == "cpu" else {}),
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "d_model": self.d_model,
            "d_mlp": self.d_mlp,
            "d_vocab": self.d_vocab,
            "gated_mlp": self.gated_mlp,
            "prepend_bos": self.prepend_bos,
            "chat": self.chat,
            "source": {k: portable_path(v) for k, v in self.source.items()},
        }

    # ------------------------------------------------------------------ tokens
    def encode(self, text: Union[str, Sequence[str]], prepend_bos: Optional[bool] = None) -> Any:
        """Token ids of ``text`` (a list of ints, or a list of such lists for a list of texts).

        Args:
            text: one string or a list of strings.
            prepend_bos: put the BOS token first; defaults to the model's policy
                (:attr:`prepend_bos`). The tokenizer's own special tokens are never added.
        """
        if isinstance(text, str):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            pb = self.prepend_bos if prepend_bos is None else prepend_bos
            if pb:
                if self.bos_token_id is None:
                    raise InterpError(f"{self.spec} has no BOS token; call with prepend_bos=False")
                ids = [self.bos_token_id] + list(ids)
            return list(ids)
        return [self.encode(t, prepend_bos) for t in text]

    def to_tokens(self, text: str, prepend_bos: Optional[bool] = None) -> Int[torch.Tensor, "1 pos"]:
        """Token ids of one string as a ``[1, pos]`` tensor (TransformerLens style)."""
        return torch.tensor([self.encode(text, prepend_bos)], dtype=torch.long)

    def to_str_tokens(self, text: Union[str, Sequence[int], torch.Tensor], prepend_bos: Optional[bool] = None) -> list[str]:
        """The string of each token of ``text`` (a string, or token ids)."""
        ids = self.encode(text, prepend_bos) if isinstance(text, str) else [int(i) for i in torch.as_tensor(text).reshape(-1)]
        return [self.tokenizer.decode([i]) for i in ids]

    def to_single_token(self, text: str) -> int:
        """The id of a string that is exactly one token; raises if it is not."""
        ids = self.encode(text, prepend_bos=False)
        if len(ids) != 1:
            raise InterpError(f"{text!r} is {len(ids)} tokens for {self.spec}, not one")
        return ids[0]

    def first_token(self, text: str) -> int:
        """The id of the first token of ``text`` (answers are scored by their first token)."""
        ids = self.encode(text, prepend_bos=False)
        if not ids:
            raise InterpError(f"{text!r} encodes to no tokens")
        return ids[0]

    def chat_prompt(self, user_message: str) -> str:
        """``user_message`` wrapped in the tokenizer's chat template, ready for the assistant's reply."""
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
        )

    # ------------------------------------------------------------------ weights
    @property
    def W_U(self) -> Float[torch.Tensor, "d_model d_vocab"]:
        return self.bridge.W_U

    def _stacked(self, attr: str) -> Optional[torch.Tensor]:
        """A bridge parameter stacked over layers, or None where the checkpoint has none (bias-free)."""
        try:
            return getattr(self.bridge, attr)
        except AttributeError:
            return None

    @property
    def b_U(self) -> Float[torch.Tensor, "d_vocab"]:
        b = self._stacked("b_U")
        return b if b is not None else torch.zeros(self.d_vocab, dtype=self.dtype, device=self.device)

    @property
    def W_E(self) -> Float[torch.Tensor, "d_vocab d_model"]:
        return self.bridge.W_E

    def W_O(self, layer: int) -> Float[torch.Tensor, "head d_head d_model"]:
        """Per-head output matrix of one layer."""
        return self.bridge.W_O[layer]

    def b_O(self, layer: int) -> Float[torch.Tensor, "d_model"]:
        b = self._stacked("b_O")
        return b[layer] if b is not None else torch.zeros(self.d_model, dtype=self.dtype, device=self.device)

    def W_out(self, layer: int) -> Float[torch.Tensor, "d_mlp d_model"]:
        """The MLP output matrix of one layer (TransformerLens layout: hidden -> residual)."""
        return self.bridge.W_out[layer]

    def b_out(self, layer: int) -> Float[torch.Tensor, "d_model"]:
        b = self._stacked("b_out")
        return b[layer] if b is not None else torch.zeros(self.d_model, dtype=self.dtype, device=self.device)

    def mlp_out_parameter(self, layer: int) -> tuple[torch.nn.Parameter, bool]:
        """The live parameter of the MLP output projection, to edit in place (ROME).

        Returns:
            ``(param, transposed)``: ``transposed`` is True when ``param`` is stored as
            ``[d_mlp, d_model]`` (GPT-2's Conv1D), False for ``nn.Linear``'s ``[d_model, d_mlp]``.
        """
        out = self.bridge.blocks[layer].mlp.out
        mod = getattr(out, "original_component", out)
        w = mod.weight
        transposed = tuple(w.shape) == (self.d_mlp, self.d_model) and self.d_mlp != self.d_model
        if type(mod).__name__ == "Conv1D":
            transposed = True
        return w, transposed

    # ------------------------------------------------------------------ readout
    def final_norm(self, resid: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... d_model"]:
        """The final layer norm / RMS norm, as the model applies it before unembedding."""
        return self.bridge.ln_final(resid)

    def unembed(self, resid: Float[torch.Tensor, "... d_model"], normalize: bool = True) -> Float[torch.Tensor, "... d_vocab"]:
        """Logits from a residual-stream vector (logit lens when ``normalize``)."""
        x = self.final_norm(resid) if normalize else resid
        logits = gemm.matmul(x.to(self.W_U.dtype), self.W_U)
        b = self.b_U
        if bool(b.any()):  # most families have no unembedding bias: adding zeros costs a pass over the logits
            logits = logits + b
        cap = float(getattr(self.bridge.cfg, "output_logits_soft_cap", -1.0) or -1.0)
        if cap > 0:
            logits = cap * torch.tanh(logits / cap)
        return logits

    def head_outputs(
        self, z: Float[torch.Tensor, "... head d_head"], layer: int
    ) -> Float[torch.Tensor, "... head d_model"]:
        """Each head's write into the residual stream from its ``hook_z`` value (no bias).

        This gives per-head outputs at just the positions captured, without turning on
        ``use_attn_result`` for the whole model. They sum (plus ``b_O``) to ``attn.hook_out``; in
        families with a post-attention norm (Gemma 2/3) that norm comes after.
        """
        W = self.W_O(layer).to(z.device, z.dtype)
        return torch.einsum("...hd,hdm->...hm", z, W)

    def _post_attn_norm(self, layer: int) -> Optional[Any]:
        block = self.bridge.blocks[layer]
        return getattr(block, "ln1_post", None)

    def head_writes(
        self, result: Float[torch.Tensor, "... head d_model"], layer: int
    ) -> Float[torch.Tensor, "... head d_model"]:
        """Each head's contribution to the residual stream, where a norm follows the attention output.

        Most families add ``sum_h result_h + b_O`` to the residual stream, and this returns
        ``result`` unchanged. Gemma 2/3 apply an RMS norm to that sum first:
        ``out = w * (sum_h result_h + b_O) / rms(sum_h result_h + b_O)``. Direct logit attribution
        linearises it at the actual input: the scale ``w / rms(total)`` is computed once from the
        real total and then applied to each head alone, so head ``h`` writes
        ``w * result_h / rms(total)`` and the heads plus the bias term (:meth:`attn_bias_write`) sum
        exactly to the norm's output. The scale is a property of the prompt, not of one head, so an
        ablated head's attribution is read at the unablated scale.
        """
        norm = self._post_attn_norm(layer)
        if norm is None:
            return result
        return result * self._post_norm_scale(result, layer, norm).unsqueeze(-2)

    def attn_bias_write(self, result: Float[torch.Tensor, "... head d_model"], layer: int) -> Float[torch.Tensor, "... d_model"]:
        """The attention bias ``b_O`` as written into the residual stream (see :meth:`head_writes`)."""
        b = self.b_O(layer).to(result.device, result.dtype)
        norm = self._post_attn_norm(layer)
        if norm is None:
            return b.expand(result.shape[:-2] + b.shape)
        return b * self._post_norm_scale(result, layer, norm)

    def _post_norm_scale(self, result: torch.Tensor, layer: int, norm: Any) -> torch.Tensor:
        total = result.sum(-2) + self.b_O(layer).to(result.device, result.dtype)
        with torch.no_grad():
            normed = norm(total)
        safe = torch.where(total.abs() > 0, total, torch.ones_like(total))
        return torch.where(total.abs() > 0, normed / safe, torch.zeros_like(total))

    # ------------------------------------------------------------------ hook names
    def hook(self, kind: str, layer: Optional[int] = None) -> Optional[str]:
        """The bridge hook name for a component, or None where the family has none.

        ``kind`` is one of ``pattern z q k v attn_out mlp_out resid_pre resid_mid resid_post
        mlp_gate mlp_data mlp_post result``. ``mlp_gate`` is ``mlp.hook_pre`` (for non-gated MLPs the
        pre-activation), ``mlp_data`` is ``mlp.hook_pre_linear`` (None for non-gated MLPs),
        ``result`` is a derived hook (per-head outputs from ``hook_z``, see :func:`interp.capture`).
        """
        table = {
            "pattern": "attn.hook_pattern",
            "z": "attn.hook_z",
            "q": "attn.hook_q",
            "k": "attn.hook_k",
            "v": "attn.hook_v",
            "result": "attn.hook_result",
            "attn_out": "hook_attn_out",
            "mlp_out": "hook_mlp_out",
            "resid_pre": "hook_resid_pre",
            "resid_mid": "hook_resid_mid",
            "resid_post": "hook_resid_post",
            "mlp_gate": "mlp.hook_pre",
            "mlp_data": "mlp.hook_pre_linear",
            "mlp_post": "mlp.hook_post",
        }
        if kind == "final_norm":
            return "ln_final.hook_normalized"
        if kind not in table:
            raise InterpError(f"unknown hook kind {kind!r}; one of {sorted(table)}")
        if layer is None or not (-self.n_layers <= layer < self.n_layers):
            raise InterpError(f"layer {layer} out of range for {self.n_layers} layers")
        if kind == "mlp_data" and not self.gated_mlp:
            return None
        return f"blocks.{layer % self.n_layers}.{table[kind]}"

    # ------------------------------------------------------------------ running
    def forward(self, tokens: Int[torch.Tensor, "batch pos"], **kwargs: Any) -> Float[torch.Tensor, "batch pos d_vocab"]:
        """Plain logits for a batch of equal-length token ids."""
        with torch.no_grad():
            return self.bridge(tokens.to(self.device), **kwargs)

    # ------------------------------------------------------------------ TransformerLens habits
    @property
    def cfg(self) -> Any:
        """The bridge's config (``n_layers``, ``d_model``, ``n_heads``, ``d_vocab``, ...), as on a
        TransformerLens model."""
        return self.bridge.cfg

    def tokens(
        self, input: Union[str, Sequence[str], torch.Tensor, Sequence[int]], prepend_bos: Optional[bool] = None,
    ) -> tuple[Int[torch.Tensor, "batch pos"], Optional[Int[torch.Tensor, "batch pos"]]]:
        """Token ids of ``input`` on the model's device, with this project's BOS policy.

        Args:
            input: a string, a list of strings (right-padded to one length), a list of ids, or a
                ``[pos]`` / ``[batch, pos]`` tensor of ids (used as given).
            prepend_bos: put the BOS token first (default: the model's :attr:`prepend_bos`).

        Returns:
            ``(tokens, attention_mask)``; the mask is None unless strings of unequal length were padded.
        """
        mask = None
        if isinstance(input, torch.Tensor):
            toks = input if input.ndim == 2 else input.reshape(1, -1)
        elif isinstance(input, str):
            toks = torch.tensor([self.encode(input, prepend_bos)], dtype=torch.long)
        elif len(input) and all(isinstance(t, str) for t in input):
            ids = self.encode(list(input), prepend_bos)
            width = max(len(i) for i in ids)
            toks = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for r, i in enumerate(ids):
                toks[r, : len(i)] = torch.tensor(i)
                mask[r, : len(i)] = 1
            if bool(mask.all()):
                mask = None
        elif len(input) and all(isinstance(t, int) for t in input):
            toks = torch.tensor([list(input)], dtype=torch.long)
        else:
            raise InterpError("input must be a string, a list of strings, a list of token ids or a tensor of ids")
        return toks.to(self.device), (mask.to(self.device) if mask is not None else None)

    def __call__(self, input: Union[str, Sequence[str], torch.Tensor], **kwargs: Any) -> Float[torch.Tensor, "batch pos d_vocab"]:
        """Logits, like :meth:`forward` (``model(tokens)`` as on a TransformerLens model); strings
        are tokenised with the model's BOS policy (lists right-padded, with an attention mask)."""
        prepend_bos = kwargs.pop("prepend_bos", None)
        toks, mask = self.tokens(input, prepend_bos)
        if mask is not None:
            kwargs.setdefault("attention_mask", mask)
        return self.forward(toks, **kwargs)

    def run_with_cache(self, input: Union[str, Sequence[str], torch.Tensor], *args: Any, prepend_bos: Optional[bool] = None,
                       **kwargs: Any) -> tuple[Any, Any]:
        """``(logits, cache)`` from the bridge's ``run_with_cache``, on tokens made with this
        project's BOS policy (see :meth:`tokens`)."""
        toks, mask = self.tokens(input, prepend_bos)
        if mask is not None:
            kwargs.setdefault("attention_mask", mask)
        return self.bridge.run_with_cache(toks, *args, **kwargs)

    def run_with_hooks(self, input: Union[str, Sequence[str], torch.Tensor], fwd_hooks: Sequence[tuple[Any, Any]] = (),
                       *, prepend_bos: Optional[bool] = None, **kwargs: Any) -> Any:
        """The bridge's ``run_with_hooks`` (hooks removed afterwards), on tokens made with this
        project's BOS policy (see :meth:`tokens`)."""
        toks, mask = self.tokens(input, prepend_bos)
        if mask is not None:
            kwargs.setdefault("attention_mask", mask)
        return self.bridge.run_with_hooks(toks, fwd_hooks=list(fwd_hooks), **kwargs)

    def generate(self, input: Union[str, torch.Tensor, Sequence[int]], max_new_tokens: int = 10, *,
                 do_sample: bool = False, prepend_bos: Optional[bool] = None, **kwargs: Any) -> Union[str, torch.Tensor]:
        """The bridge's ``generate`` (greedy unless ``do_sample``) on tokens made with this
        project's BOS policy.

        Returns:
            For a string, the prompt and its continuation as a string (BOS left out); else the
            ``[batch, pos + new]`` token ids.
        """
        toks, _ = self.tokens(input, prepend_bos)
        kwargs.setdefault("verbose", False)
        with torch.no_grad():
            out = self.bridge.generate(toks, max_new_tokens=max_new_tokens, do_sample=do_sample, **kwargs)
        if isinstance(input, str):
            skip = 1 if (toks.shape[1] and self.bos_token_id is not None and int(toks[0, 0]) == self.bos_token_id
                         and (self.prepend_bos if prepend_bos is None else prepend_bos)) else 0
            return self.tokenizer.decode(out[0, skip:].tolist())
        return out

    def to_string(self, tokens: Union[torch.Tensor, Sequence[int], Sequence[Sequence[int]]]) -> Union[str, list[str]]:
        """Decode token ids: one string for ``[pos]`` ids, a list of strings for ``[batch, pos]``."""
        t = torch.as_tensor(tokens)
        if t.ndim == 2:
            return [self.tokenizer.decode(r.tolist()) for r in t]
        return self.tokenizer.decode(t.reshape(-1).tolist())

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[Any, Any]]) -> Iterator["Model"]:
        """Apply forward hooks (``[(name_or_filter, fn), ...]``) for the duration of the block.

        Everything run on this model inside the block, :func:`interp.capture` and
        :func:`interp.generate` included, sees the hooks.
        """
        with self.bridge.hooks(fwd_hooks=list(fwd_hooks)):
            yield self


def load_model(
    spec: str = loading.DEFAULT_SPEC,
    device: Optional[str] = None,
    dtype: Optional[Union[str, torch.dtype]] = None,
    numerics: str = "hf",
    device_map: Optional[Any] = None,
    precision: str = "mixed",
) -> Model:
    """Load a model by spec and wrap it (see :mod:`interp.loading` for what a spec may be).

    Args:
        spec: registry name, ``.gguf`` path, local HF folder or hub name.
        device: ``"cpu"``, ``"cuda"``, ...; defaults to CUDA when available.
        dtype: ``"float32"`` (default), ``"bfloat16"``, ``"float16"`` or a torch dtype.
        numerics: ``"hf"`` (raw weights) or ``"tl"`` (TransformerLens-processed weights).
        device_map: ``accelerate`` placement for a model larger than one GPU (``"auto"``,
            ``"balanced"`` or a dict); ``device`` is then ignored. Recorded in the manifest.
        precision: with a ``dtype`` below float32: ``"mixed"`` (default) keeps attention scores, biases
            and the residual stream in float32 (:func:`interp.loading.mixed_precision`: pure bfloat16 moves
            Qwen2.5's answer probabilities by up to 0.35); ``"pure"`` runs everything in ``dtype``.
            Recorded in the manifest.

    Returns:
        The :class:`Model` handle.

    Raises:
        InterpError: with a one-line message for a bad spec, a missing file or an
            architecture TransformerLens cannot bridge.
    """
    if numerics not in NUMERICS:
        raise InterpError(f"numerics must be one of {NUMERICS}, not {numerics!r}")
    if precision not in loading.PRECISIONS:
        raise InterpError(f"precision must be one of {loading.PRECISIONS}, not {precision!r}")
    if isinstance(dtype, str):
        if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
            raise InterpError(f"unknown dtype {dtype!r}")
        dtype = getattr(torch, dtype)
    dtype = dtype or torch.float32
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    slow = slow_bf16_warning(dtype, device)
    if slow:
        warnings.warn(slow, stacklevel=2)
    t0 = time.perf_counter()
    resolved = loading.resolve(spec)
    untested = loading.transformers_untested()
    if untested:
        warnings.warn(untested, stacklevel=2)
    raw = loading.load_raw(resolved, dtype, device_map)
    if device_map is None:
        raw.hf_model.to(device)
    else:
        raw.source_detail["device_map"] = device_map if isinstance(device_map, str) else {str(k): str(v) for k, v in device_map.items()}
    name = resolved.entry.get("hf_id") or resolved.location
    bridge = loading.build_bridge(raw.hf_model, raw.tokenizer, name)
    policy = loading.precision_label(dtype, precision)
    if dtype != torch.float32 and precision == "mixed":  # on the bridged blocks: their attention is what runs
        loading.mixed_precision(bridge.original_model, dtype)
    if numerics == "tl":
        bridge.enable_compatibility_mode(disable_warnings=True)
    entry = resolved.entry
    return Model(
        bridge,
        raw.tokenizer,
        spec=spec,
        numerics=numerics,
        prepend_bos=entry.get("prepend_bos"),
        chat=bool(entry.get("chat", getattr(raw.tokenizer, "chat_template", None) is not None)),
        weight_hash=raw.weight_hash,
        source=dict(raw.source_detail, kind=resolved.kind),
        load_seconds=time.perf_counter() - t0,
        precision=policy,
    )


def slow_bf16_warning(dtype: torch.dtype, device: Any) -> Optional[str]:
    """Why bf16 on this CPU is slow, or None: an x86 CPU without bf16 matrix instructions
    (``avx512_bf16``, ``amx_bf16``) runs bf16 products slower than float32 (on an AVX2-only AMD EPYC,
    2 threads: a 256 x 896 by 896 x 4,864 product 0.21-4.1 s in bf16 against 38 ms in float32)."""
    if dtype != torch.bfloat16 or not str(device).startswith("cpu"):
        return None
    flags = gemm.cpuinfo().get("flags")
    if flags is None or set(flags.split()) & {"avx512_bf16", "amx_bf16"}:
        return None  # not an x86 cpuinfo (nothing known), or the instructions are there
    return ("this CPU has no bf16 matrix instructions (avx512_bf16, amx_bf16): bf16 products run slower "
            "than float32 here, so --dtype bfloat16 makes runs slower, not faster; float32 is the faster choice")


def wrap_hf_model(hf_model: Any, tokenizer: Any, spec: str = "in-memory", **kwargs: Any) -> Model:
    """Wrap an HF model already in memory (tests build tiny random models this way)."""
    bridge = loading.build_bridge(hf_model, tokenizer, spec)
    if kwargs.pop("numerics", "hf") == "tl":
        bridge.enable_compatibility_mode(disable_warnings=True)
        kwargs["numerics"] = "tl"
    return Model(bridge, tokenizer, spec=spec, **kwargs)


def portable_path(value: Any) -> Any:
    """A path recorded in results, written relative to site-packages or the home folder so that
    results shared between machines do not carry one machine's layout."""
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    import sysconfig

    roots = [(sysconfig.get_paths()[k], "<site-packages>") for k in ("purelib", "platlib")]
    roots.append((str(Path.home()), "~"))
    for root, name in roots:
        if value == root or value.startswith(root.rstrip("/") + "/"):
            return name + value[len(root.rstrip("/")):]
    return value
