"""Baselines measured on the same ground truth: exhaustive search, uniform random sampling, Magikarp,
and GlitchProber's detector fed with token statistics instead of activations.

Each returns the glitch tokens it finds and what it cost in oracle calls and seconds, so methods
compare on recall at their cost (precision is 1 for all of them: every reported token went through
the oracle).

The token-statistics detector asks whether the activations carry anything that the token's text and
weights do not: it trains the same scaler -> PCA -> SVM on the same labelled sample, with features
that need no forward pass (:func:`token_statistics`: the token's text, how the tokenizer splits it
again, its word frequency, the token id (BPE merge order, a frequency proxy), embedding and
unembedding norms).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from interp.errors import InterpError
from interp.glitch.magikarp import magikarp_candidates, magikarp_indicator, magikarp_verify, unused_reference_tokens
from interp.glitch.oracle import RepeatTemplate
from interp.model import Model


def random_sampling(
    truth: pd.DataFrame, n_calls: int, seed: int = 0
) -> list[int]:
    """Glitch tokens found by checking ``n_calls`` candidate tokens drawn uniformly (from stored labels).

    Args:
        truth: ground truth with ``token_id`` and ``cls`` (only ``glitch``/``normal`` rows are drawn).
        n_calls: oracle calls the budget allows.
        seed: random state.
    """
    cand = truth[truth.cls.isin(["glitch", "normal"])]
    n = int(min(max(n_calls, 0), len(cand)))
    pick = cand.sample(n=n, random_state=seed) if n else cand.iloc[:0]
    return pick.loc[pick.cls == "glitch", "token_id"].astype(int).tolist()


def magikarp_search(
    model: Model,
    candidates: Sequence[int],
    *,
    share: float = 0.02,
    template: Optional[RepeatTemplate] = None,
    batch_size: int = 16,
) -> tuple[list[int], pd.DataFrame, dict]:
    """Magikarp baseline as its paper: indicator, lowest ``share`` of the candidates, its own verification.

    Args:
        model: the model handle.
        candidates: tokens the oracle can judge (the indicator ranks these).
        share: share of the candidates to verify (the paper: 0.5-2%).
        template: the oracle prompt (its tokens are not used as unused references).
        batch_size: rows per verification forward pass.

    Returns:
        ``(verified ids, table of token_id, indicator, verified, max_prob, info)`` where ``info`` says
        which reference rows and indicator were used, and the seconds spent.
    """
    if not 0.005 <= share <= 0.02:
        raise InterpError(f"Magikarp verifies the lowest 0.5-2% of the vocabulary, not {share:.2%}")
    t0 = time.perf_counter()
    ref, source = unused_reference_tokens(model, template)
    scores, kind = magikarp_indicator(model, ref)
    picked = magikarp_candidates(scores, share, candidates)
    t_ind = time.perf_counter() - t0
    t0 = time.perf_counter()
    ver = magikarp_verify(model, picked, batch_size=batch_size)
    t_ver = time.perf_counter() - t0
    table = pd.DataFrame({"token_id": np.asarray(candidates, dtype=int)})
    table["indicator"] = scores[table.token_id]
    table = table.merge(ver[["token_id", "max_prob", "verified"]], on="token_id", how="left")
    table["checked"] = table.token_id.isin(picked)
    table["verified"] = table.verified.fillna(False).astype(bool)
    found = ver.loc[ver.verified, "token_id"].astype(int).tolist()
    info = {"reference": source, "n_reference": len(ref), "indicator": kind, "n_checked": len(picked),
            "seconds_indicator": t_ind, "seconds_verification": t_ver}
    return found, table, info


TOKEN_STATISTICS = ("chars", "chars_stripped", "leading_space", "alphabetic", "capitalised", "all_caps", "has_digit",
                    "n_punctuation", "ascii", "id_rank", "embed_norm", "unembed_norm",
                    "pieces", "pieces_spaced", "pieces_lower", "pieces_spaced_lower", "pieces_upper", "round_trip",
                    "vowel_share", "consonant_run", "zipf")

_VOWELS = set("aeiouyAEIOUY")


def _consonant_run(text: str) -> int:
    """The longest run of consecutive letters that are not vowels."""
    best = run = 0
    for c in text:
        run = run + 1 if c.isalpha() and c not in _VOWELS else 0
        best = max(best, run)
    return best


def token_statistics(model: Model, token_ids: Sequence[int]) -> pd.DataFrame:
    """Per-token features that need no forward pass (columns :data:`TOKEN_STATISTICS`).

    - the token's text: length with and without surrounding whitespace, a leading space, letters,
      case, digits, punctuation, ASCII, share of vowels, longest consonant run;
    - its place in the vocabulary and weights: id rank (BPE merge order, a frequency proxy),
      embedding and unembedding norms;
    - how the tokenizer splits the stripped text again (``pieces``: alone; ``pieces_spaced``: after
      a space; ``pieces_lower`` / ``pieces_spaced_lower`` / ``pieces_upper``: its other cases) and
      whether the token's own text encodes back to it (``round_trip``): a word the model must
      rebuild from pieces to repeat it is harder to repeat;
    - ``zipf``: the stripped text's word frequency (``wordfreq``, English, case-folded, 0 where
      unknown).

    Args:
        model: the model handle.
        token_ids: vocabulary ids.

    Returns:
        One row per token, in the order of ``token_ids``.
    """
    from wordfreq import zipf_frequency

    ids = np.asarray([int(t) for t in token_ids], dtype=int)
    if len(ids) and not (0 <= ids.min() and ids.max() < model.d_vocab):
        raise InterpError(f"token ids out of range 0..{model.d_vocab - 1}")
    with torch.no_grad():
        e_norm = model.W_E.detach().to("cpu", torch.float32).norm(dim=-1).numpy()
        u_norm = model.W_U.detach().to("cpu", torch.float32).norm(dim=0).numpy()
    tok = model.tokenizer
    texts = [tok.decode([int(t)]) for t in ids]
    cores = [t.strip() for t in texts]
    rows = []
    for text, core in zip(texts, cores):
        rows.append((len(text), len(core), text[:1].isspace(), core.isalpha(), core[:1].isupper(), core.isupper(),
                     any(c.isdigit() for c in core), sum(not c.isalnum() for c in core), core.isascii()))
    df = pd.DataFrame(rows, columns=list(TOKEN_STATISTICS[:9])).astype(float)
    df["id_rank"] = ids / max(1, model.d_vocab - 1)
    df["embed_norm"] = e_norm[ids]
    df["unembed_norm"] = u_norm[ids]

    def pieces(strings: list[str]) -> np.ndarray:
        enc = tok(strings, add_special_tokens=False)["input_ids"] if strings else []
        return np.array([len(e) if s else 0 for s, e in zip(strings, enc)], dtype=float)

    df["pieces"] = pieces(cores)
    df["pieces_spaced"] = pieces([" " + c if c else "" for c in cores])
    df["pieces_lower"] = pieces([c.lower() for c in cores])
    df["pieces_spaced_lower"] = pieces([" " + c.lower() if c else "" for c in cores])
    df["pieces_upper"] = pieces([c.upper() for c in cores])
    again = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
    df["round_trip"] = [float(list(e) == [int(t)]) for e, t in zip(again, ids)]
    df["vowel_share"] = [sum(c in _VOWELS for c in core) / max(1, len(core)) for core in cores]
    df["consonant_run"] = [float(_consonant_run(core)) for core in cores]
    df["zipf"] = [zipf_frequency(core, "en") if core else 0.0 for core in cores]
    return df


def statistics_detector(
    model: Model,
    candidates: Sequence[int],
    in_sample: Sequence[bool],
    sample_glitch: Sequence[bool],
    label: Callable[[list[int]], list[str]],
    *,
    decision_threshold: float = 0.0,
    **svm: Any,
) -> dict:
    """GlitchProber's scaler -> PCA -> SVM on :func:`token_statistics`, trained on an already labelled sample.

    Args:
        model: the model handle.
        candidates: every token the oracle can judge.
        in_sample: per candidate, whether it is in the labelled sample.
        sample_glitch: the sample's labels (True: glitch), in candidate order.
        label: ``label(token_ids) -> classes`` used to verify the predicted tokens.
        decision_threshold: tokens above this SVM decision value are verified.
        **svm: passed to :func:`interp.glitch.detect.train_detector` (``kernel``, ``degree``, ``C``,
            ``class_weight``, ``seed``; GlitchProber's defaults). PCA keeps every statistic.

    Returns:
        ``found`` (verified glitch ids, sampled ones included), ``score`` (decision value per
        candidate, NaN in the sample), ``predicted`` (mask), and seconds for ``features``,
        ``training``, ``prediction`` and ``verification``.
    """
    from interp.glitch.detect import detector_scores, train_detector

    cand = np.asarray([int(t) for t in candidates], dtype=int)
    samp = np.asarray(in_sample, dtype=bool)
    y = np.asarray(sample_glitch, dtype=bool)
    if len(samp) != len(cand) or len(y) != int(samp.sum()):
        raise InterpError("in_sample must have one entry per candidate and sample_glitch one per sampled token")
    times = {}
    t0 = time.perf_counter()
    X = token_statistics(model, cand).to_numpy()
    times["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    det = train_detector(X[samp], y, n_components=X.shape[1], **svm)
    times["training"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    score = np.full(len(cand), np.nan)
    score[~samp] = detector_scores(det, X[~samp])
    times["prediction"] = time.perf_counter() - t0
    predicted = ~samp & (np.nan_to_num(score, nan=-np.inf) > decision_threshold)
    t0 = time.perf_counter()
    cls = label(cand[predicted].tolist()) if predicted.any() else []
    times["verification"] = time.perf_counter() - t0
    found = cand[samp][y].tolist() + [int(t) for t, c in zip(cand[predicted], cls) if c == "glitch"]
    return {"found": found, "score": score, "predicted": predicted, "seconds": times}


def found_in_verification_order(in_sample: Sequence[bool], score: Sequence[float], is_glitch: Sequence[bool]) -> np.ndarray:
    """Glitch tokens found after verifying the ``k`` top-scored tokens outside the sample, for every ``k``.

    Returns:
        ``[n_outside + 1]`` counts: entry ``k`` is the sample's glitch tokens plus the glitch tokens
        among the ``k`` highest-scored others (ties keep token order). Non-decreasing.
    """
    samp = np.asarray(in_sample, dtype=bool)
    y = np.asarray(is_glitch, dtype=bool)
    rest = np.flatnonzero(~samp)
    order = rest[np.argsort(-np.asarray(score, dtype=float)[rest], kind="stable")]
    return int((y & samp).sum()) + np.concatenate([[0], np.cumsum(y[order])])


def calls_for_recall(in_sample: Sequence[bool], score: Sequence[float], is_glitch: Sequence[bool], target: float = 0.8) -> Optional[int]:
    """Oracle calls a detector needs to reach ``target`` recall: the sample plus the fewest top-scored
    other tokens (verified in order of score) that bring the found glitch tokens to ``target``.

    Returns None only when ``target`` exceeds what verifying every token finds (``target > 1``).
    """
    found = found_in_verification_order(in_sample, score, is_glitch)
    need = int(np.ceil(target * np.asarray(is_glitch, dtype=bool).sum() - 1e-9))
    if found[-1] < need:
        return None
    return int(np.asarray(in_sample, dtype=bool).sum()) + int(np.searchsorted(found, need))
