"""The repeat oracle: a token is a glitch token when the model cannot repeat it.

GlitchProber (Zhang et al. 2024) asks the model "Can you repeat the string '<token>' and return back
to me?" with the token inserted by id, generates greedily (10 new tokens), and calls the token a
glitch token when the reply does not contain the token's text. The default prompt here keeps the
paper's request but puts the quoted string on its own line at the end (fewer tokens after the
token, which every row pays for), shows three solved examples as earlier chat turns and starts the
reply with the opening quote: zero-shot, SmolLM2-135M-Instruct answers almost every token with
small talk ("I'm ready to help. Please provide the string"). The prompt is the same for every
token except for that one id, so the template's part before the token is run once (its KV cache is
shared through :func:`interp.greedy_generate`'s ``prefix``) and each row stops as soon as the reply
contains the token (the outcome is then decided).

Tokens whose text cannot be judged are classed before any generation: special tokens, tokens that
decode to whitespace only, and partial UTF-8 tokens (bytes that do not decode on their own).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from interp.errors import InterpError
from interp.generate import greedy_generate
from interp.model import Model

REPEAT_PROMPT = "Can you repeat the string below and return back to me?\n'{token}'"
REPEAT_REPLY = "'{token}'"
REPEAT_SHOTS = ("hello", " world", "ing")
TOKEN_CLASSES = ("normal", "glitch", "whitespace", "partial_utf8", "special")
JUDGED_CLASSES = ("normal", "glitch")
_MARK = "\x00TOKEN\x00"


def call_tokens(suffix_len: int, max_new_tokens: int) -> int:
    """The most tokens one oracle call forwards beyond the shared prefix's cached pass.

    The prompt pass runs the token and the ``suffix_len`` tokens after it and yields the first reply
    token; each of at most ``max_new_tokens - 1`` decoding steps runs one more (a row leaves the batch
    once its verdict is decided, :mod:`interp.generate`): ``suffix_len + max_new_tokens``. A price that
    is the same on every machine and in every run, where the seconds a call takes are not.
    """
    if suffix_len < 0 or max_new_tokens < 1:
        raise InterpError(f"a call needs suffix_len >= 0 and max_new_tokens >= 1, not {suffix_len} and {max_new_tokens}")
    return int(suffix_len) + int(max_new_tokens)


@dataclass(frozen=True)
class RepeatTemplate:
    """The oracle prompt split around the token slot.

    Attributes:
        prefix_ids: tokens before the token (shared by every row, run once).
        suffix_ids: tokens after the token (the same for every row).
        text: the whole prompt with ``{token}`` where the token goes.
        chat: whether the model's chat template wraps the request.
        reply_prefix: the start of the reply written into the prompt (the part of the example
            reply before the string).
        shots: example strings asked for and repeated in earlier turns.
    """

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    text: str
    chat: bool
    reply_prefix: str = ""
    shots: tuple[str, ...] = ()

    def row(self, token_id: int) -> list[int]:
        """The tokens that follow the shared prefix for one probed token."""
        return [int(token_id), *self.suffix_ids]

    def tokens_per_call(self, max_new_tokens: int) -> int:
        """The most tokens one call forwards after the shared prefix (:func:`call_tokens`)."""
        return call_tokens(len(self.suffix_ids), max_new_tokens)

    def describe(self) -> dict[str, Any]:
        return {"text": self.text, "chat": self.chat, "reply_prefix": self.reply_prefix, "shots": list(self.shots),
                "prefix_len": len(self.prefix_ids), "suffix_len": len(self.suffix_ids)}


def repeat_template(
    model: Model,
    prompt: str = REPEAT_PROMPT,
    chat: Optional[bool] = None,
    reply: str = REPEAT_REPLY,
    shots: Sequence[str] = REPEAT_SHOTS,
) -> RepeatTemplate:
    """Split the oracle prompt (chat-wrapped for chat models) around the ``{token}`` slot.

    The request is preceded by ``len(shots)`` solved examples (earlier user/assistant turns for a
    chat model, earlier lines otherwise) and followed by the start of the reply (``reply`` up to
    its ``{token}``), so the model's next tokens are its attempt at the string.

    Args:
        model: the model handle.
        prompt: the request, with ``{token}`` where the probed token goes.
        chat: wrap in the chat template; defaults to the model's registry entry (``model.chat``).
        reply: the form of an answer, with ``{token}`` where the string goes.
        shots: example strings (``()`` for zero-shot).

    Returns:
        The :class:`RepeatTemplate`.
    """
    if prompt.count("{token}") != 1 or reply.count("{token}") != 1:
        raise InterpError("the repeat prompt and reply need exactly one '{token}' slot each")
    use_chat = model.chat if chat is None else chat
    if use_chat and getattr(model.tokenizer, "chat_template", None) is None:
        raise InterpError(f"{model.spec} has no chat template; pass chat=False")
    reply_prefix = reply.split("{token}")[0]
    if use_chat:
        msgs = []
        for s in shots:
            msgs += [{"role": "user", "content": prompt.replace("{token}", s)},
                     {"role": "assistant", "content": reply.replace("{token}", s)}]
        msgs.append({"role": "user", "content": prompt.replace("{token}", _MARK)})
        full = model.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) + reply_prefix
    else:
        turns = [prompt.replace("{token}", s) + "\n" + reply.replace("{token}", s) + "\n\n" for s in shots]
        full = "".join(turns) + prompt.replace("{token}", _MARK) + "\n" + reply_prefix
    before, after = full.split(_MARK)
    prefix = model.encode(before) if before else []
    if not prefix and model.bos_token_id is not None:
        prefix = [model.bos_token_id]
    suffix = model.encode(after, prepend_bos=False) if after else []
    if not prefix:
        raise InterpError("the repeat prompt has nothing before the token (it needs a shared prefix)")
    n_ctx = int(getattr(model.bridge.cfg, "n_ctx", 0) or 0)
    if n_ctx and len(prefix) + len(suffix) + 1 + 16 > n_ctx:
        raise InterpError(f"the repeat prompt ({len(prefix) + len(suffix) + 1} tokens) leaves no room for a reply in "
                          f"{model.spec}'s context of {n_ctx}; use fewer shots")
    return RepeatTemplate(tuple(prefix), tuple(suffix), full.replace(_MARK, "{token}"), bool(use_chat), reply_prefix,
                          tuple(shots))


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def token_bytes(tokenizer: Any, token_id: int) -> Optional[bytes]:
    """The raw bytes a token stands for (byte-level BPE or ``<0xNN>`` byte tokens), None if unknown."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if piece is None:
        return None
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            return None
    dec = _byte_decoder()
    if all(ch in dec for ch in piece):
        return bytes(dec[ch] for ch in piece)
    return None


def token_class(model: Model, token_id: int) -> Optional[str]:
    """The class a token has before any generation: ``special``, ``whitespace``, ``partial_utf8``, or None.

    None means the token's text can be judged by the oracle.
    """
    tok = model.tokenizer
    if int(token_id) in set(tok.all_special_ids) or int(token_id) in getattr(tok, "added_tokens_decoder", {}):
        return "special"
    raw = token_bytes(tok, token_id)
    if raw is not None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "partial_utf8"
    else:
        text = tok.decode([int(token_id)])
        if "\ufffd" in text:
            return "partial_utf8"
    if not text.strip():
        return "whitespace"
    return None


def token_classes(model: Model, token_ids: Sequence[int]) -> list[Optional[str]]:
    """:func:`token_class` of every token (special ids looked up once)."""
    tok = model.tokenizer
    special = set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {}) or {})
    return ["special" if int(t) in special else token_class(model, t) for t in token_ids]


def repeat_target(model: Model, token_id: int) -> str:
    """The text a reply must contain to count as a repetition (the token's text, stripped)."""
    return model.tokenizer.decode([int(token_id)]).strip()


def is_repeated(target: str, reply: str, ignore_case: bool = True) -> bool:
    """Whether ``reply`` repeats ``target`` (the paper's rule: the reply contains the token's text).

    Args:
        target: the token's text (see :func:`repeat_target`).
        reply: the generated text.
        ignore_case: compare case-insensitively (" cru" repeated as "Cru" counts).
    """
    if not target:
        return False
    if ignore_case:
        return target.casefold() in reply.casefold()
    return target in reply


@dataclass
class OracleResult:
    """What the oracle said about each probed token.

    Attributes:
        table: one row per token: ``token_id``, ``token`` (repr of its text), ``cls`` (one of
            :data:`TOKEN_CLASSES`), ``generated`` (the reply text, empty when not generated),
            ``n_new`` (tokens generated).
        seconds: wall time of the generation.
        settings: how it was run (template, max_new_tokens, decision rule).
    """

    table: pd.DataFrame
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def glitch_ids(self) -> list[int]:
        return self.table.loc[self.table.cls == "glitch", "token_id"].tolist()


def repeat_oracle(
    model: Model,
    token_ids: Sequence[int],
    *,
    max_new_tokens: int = 10,
    batch_size: int = 256,
    template: Optional[RepeatTemplate] = None,
    ignore_case: bool = True,
    progress: Optional[bool] = None,
) -> OracleResult:
    """Ask the model to repeat each token and class it (see module docstring).

    Args:
        model: the model handle.
        token_ids: vocabulary ids to probe.
        max_new_tokens: greedy tokens per reply (the paper uses 10).
        batch_size: rows per generation batch.
        template: the prompt (default: :func:`repeat_template` of the model).
        ignore_case: see :func:`is_repeated`.
        progress: show a progress bar.

    Returns:
        An :class:`OracleResult` in the order of ``token_ids``.
    """
    ids = [int(t) for t in token_ids]
    bad = [t for t in ids if not 0 <= t < model.d_vocab]
    if bad:
        raise InterpError(f"token ids out of range 0..{model.d_vocab - 1}: {bad[:5]}")
    tpl = template or repeat_template(model)
    pre = token_classes(model, ids)
    judged = [i for i, c in enumerate(pre) if c is None]
    targets = {i: repeat_target(model, ids[i]) for i in judged}
    tok = model.tokenizer
    rows = [tpl.row(ids[i]) for i in judged]

    def decided(j: int, new: list[int]) -> bool:
        return is_repeated(targets[judged[j]], tok.decode(new), ignore_case)

    t0 = time.perf_counter()
    replies = greedy_generate(
        model, rows, max_new_tokens, prefix=list(tpl.prefix_ids), batch_size=batch_size, stop=decided,
        progress=progress, desc="repeat oracle",
    ) if rows else []
    seconds = time.perf_counter() - t0
    cls = list(pre)
    generated = [""] * len(ids)
    n_new = [0] * len(ids)
    for j, i in enumerate(judged):
        text = tok.decode(replies[j])
        generated[i] = text
        n_new[i] = len(replies[j])
        cls[i] = "normal" if is_repeated(targets[i], text, ignore_case) else "glitch"
    table = pd.DataFrame({
        "token_id": ids,
        "token": [repr(tok.decode([t])) for t in ids],
        "cls": cls,
        "generated": generated,
        "n_new": n_new,
    })
    settings = {
        "template": tpl.describe(),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "ignore_case": ignore_case,
        "decision_rule": "normal if the decoded greedy reply contains the token's decoded text stripped of "
        f"surrounding whitespace ({'case-insensitive' if ignore_case else 'case-sensitive'}), else glitch; rows stop as soon as the reply contains it or "
        "at EOS; special / whitespace-only / partial-UTF-8 tokens are classed without generation",
    }
    return OracleResult(table, seconds, settings)


def label_stability(
    model: Model,
    token_ids: Sequence[int],
    reference: Sequence[str],
    shot_sets: Sequence[Sequence[str]],
    *,
    max_new_tokens: int = 10,
    batch_size: int = 256,
    ignore_case: bool = True,
    progress: Optional[bool] = None,
) -> pd.DataFrame:
    """How much of the oracle's verdict belongs to the token and how much to the prompt's wording.

    Re-runs the oracle on ``token_ids`` with other solved examples (``shot_sets``; the request and
    reply form stay the same) and sets the answers beside ``reference`` (the default prompt's). A
    detector that sees only the token (its text, weights or activations at its own position) cannot
    predict the part of the verdict that changes with the examples.

    Args:
        model: the model handle.
        token_ids: tokens to re-ask (judged tokens: ``reference`` is ``glitch`` or ``normal``).
        reference: the default prompt's class for each token.
        shot_sets: alternative example strings, one tuple per alternative prompt.
        max_new_tokens, batch_size, ignore_case, progress: as in :func:`repeat_oracle`.

    Returns:
        One row per token: ``token_id``, ``reference`` and one column ``shots_<i>`` per alternative.
    """
    ids = [int(t) for t in token_ids]
    if len(reference) != len(ids):
        raise InterpError(f"{len(reference)} reference classes for {len(ids)} tokens")
    if not shot_sets:
        raise InterpError("label_stability needs at least one alternative set of examples")
    out = pd.DataFrame({"token_id": ids, "reference": list(reference)})
    for i, shots in enumerate(shot_sets):
        tpl = repeat_template(model, shots=tuple(shots))
        res = repeat_oracle(model, ids, max_new_tokens=max_new_tokens, batch_size=batch_size, template=tpl,
                            ignore_case=ignore_case, progress=progress)
        out[f"shots_{i}"] = res.table.cls.to_numpy()
    return out


def stability_summary(table: pd.DataFrame) -> dict[str, float]:
    """From :func:`label_stability`'s table: the share of reference glitch tokens that stay glitch
    under every alternative prompt (``glitch_kept_all``), on average over alternatives
    (``glitch_kept_mean``), and the share of reference normal tokens that turn glitch (``normal_flipped_mean``)."""
    alts = [c for c in table.columns if c.startswith("shots_")]
    g = table[table.reference == "glitch"]
    n = table[table.reference == "normal"]
    kept = [(g[c] == "glitch").mean() for c in alts] if len(g) else [float("nan")]
    flipped = [(n[c] == "glitch").mean() for c in alts] if len(n) else [float("nan")]
    all_kept = float((g[alts] == "glitch").all(axis=1).mean()) if len(g) else float("nan")
    return {"glitch_kept_mean": float(np.mean(kept)), "glitch_kept_all": all_kept, "normal_flipped_mean": float(np.mean(flipped)),
            "n_tokens": int(len(table)), "n_reference_glitch": int(len(g)), "n_alternatives": len(alts)}
