"""GlitchProber's detector: label a sample with the oracle, PCA + SVM on activation features, verify.

1. Sample ``sample_ratio`` of the candidate tokens (every token the oracle can judge) and label
   them with the repeat oracle.
2. Capture the sample's features at every layer (at most ``distance_sample`` tokens), measure the
   per-layer Wasserstein distance between glitch and normal tokens, and choose the key layers.
3. Fit standardisation, PCA (``n_components``) and an SVM (polynomial kernel, ``degree``, ``C``,
   balanced class weights) on the sample's key-layer features.
4. Stream the rest of the vocabulary through the capture engine (key layers only, stopping after
   the last one), project and classify it chunk by chunk, so memory stays bounded.
5. Re-check every predicted glitch token with the oracle: the reported glitch set has precision 1.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from jaxtyping import Bool, Float
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from interp.errors import InterpError
from interp.glitch.distance import key_layers, layer_distances
from interp.glitch.features import FEATURE_KINDS, glitch_features
from interp.glitch.oracle import RepeatTemplate, repeat_oracle, repeat_template, token_classes
from interp.model import Model


def train_detector(
    X: Float[np.ndarray, "n feature"],
    y: Bool[np.ndarray, "n"],
    *,
    n_components: int = 75,
    kernel: str = "poly",
    degree: int = 3,
    C: float = 1.0,
    class_weight: Optional[str] = "balanced",
    seed: int = 0,
) -> Pipeline:
    """Standardise, reduce with PCA and fit an SVM that separates glitch from normal tokens.

    Args:
        X: feature rows of labelled tokens.
        y: True for glitch tokens.
        n_components: PCA dimensions (capped by the sample size and width).
        kernel: SVC kernel.
        degree: polynomial degree.
        C: SVM regularisation.
        class_weight: ``"balanced"`` or None.
        seed: random state of PCA and SVC.

    Returns:
        The fitted scikit-learn pipeline (``scale`` -> ``pca`` -> ``svm``).
    """
    y = np.asarray(y, dtype=bool)
    if len(y) != len(X):
        raise InterpError(f"{len(y)} labels for {len(X)} feature rows")
    if y.all() or not y.any():
        raise InterpError("the detector needs both glitch and normal tokens in its training sample")
    k = int(min(n_components, X.shape[0] - 1, X.shape[1]))
    if k < 1:
        raise InterpError("too few samples for PCA")
    pipe = Pipeline([
        ("scale", StandardScaler()),
        ("pca", PCA(n_components=k, random_state=seed)),
        ("svm", SVC(kernel=kernel, degree=degree, C=C, class_weight=class_weight, random_state=seed)),
    ])
    pipe.fit(X, y)
    return pipe


def detector_scores(detector: Pipeline, X: Float[np.ndarray, "n feature"]) -> Float[np.ndarray, "n"]:
    """SVM decision values (positive: glitch)."""
    return np.asarray(detector.decision_function(X), dtype=np.float64)


@dataclass
class Detection:
    """The outcome of :func:`glitch_prober`.

    Attributes:
        table: one row per candidate token: ``token_id, in_sample, oracle`` (the oracle's class for
            sampled and verified tokens, else ""), ``score`` (SVM decision value; NaN for the
            sample), ``predicted`` (classified glitch), ``glitch`` (final answer: sampled glitch or
            verified glitch).
        key_layers: the layers the features came from.
        distances: per-layer distances (``layer, kind, distance``).
        projection: ``[n, k]`` PCA coordinates of every candidate token (rows of ``table``).
        timings: seconds per stage (``labelling, features, training, prediction, verification``).
        excluded: tokens the oracle does not judge, with their class.
        detector: the fitted pipeline.
        settings: every parameter.
    """

    table: pd.DataFrame
    key_layers: list[int]
    distances: pd.DataFrame
    projection: np.ndarray
    timings: dict[str, float]
    excluded: pd.DataFrame
    detector: Any = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def glitch_ids(self) -> list[int]:
        return self.table.loc[self.table.glitch, "token_id"].tolist()

    @property
    def total_seconds(self) -> float:
        return float(sum(self.timings.values()))


def glitch_prober(
    model: Model,
    token_ids: Optional[Sequence[int]] = None,
    *,
    sample_ratio: float = 0.1,
    distance_sample: int = 1024,
    layers: Optional[Sequence[int]] = None,
    n_key_layers: Optional[int] = None,
    key_layer_fraction: float = 0.2,
    kinds: Sequence[str] = FEATURE_KINDS,
    position: str = "token",
    n_components: int = 75,
    kernel: str = "poly",
    degree: int = 3,
    C: float = 1.0,
    class_weight: Optional[str] = "balanced",
    decision_threshold: float = 0.0,
    max_new_tokens: int = 10,
    oracle_batch_size: int = 256,
    feature_batch_size: int = 32,
    chunk_size: int = 4096,
    template: Optional[RepeatTemplate] = None,
    labeller: Optional[Any] = None,
    seed: int = 0,
    progress: Optional[bool] = None,
    shard_dir: Optional[Any] = None,
) -> Detection:
    """Find the glitch tokens among ``token_ids`` (default: the whole vocabulary), GlitchProber style.

    Args:
        model: the model handle.
        token_ids: tokens to search (default: every vocabulary id).
        sample_ratio: share of the candidates labelled by the oracle to train on.
        distance_sample: at most this many sampled tokens are captured at every layer to choose the
            key layers.
        layers: use these key layers instead of choosing them.
        n_key_layers: how many key layers to choose (default: ``key_layer_fraction`` of the layers).
        key_layer_fraction: see :func:`interp.glitch.distance.key_layers`.
        kinds: feature kinds.
        position: feature position (``"token"`` or ``"last"``, see :mod:`interp.glitch.features`).
        n_components: PCA dimensions.
        kernel: SVM kernel.
        degree: polynomial kernel degree.
        C: SVM regularisation.
        class_weight: SVM class weights.
        decision_threshold: tokens whose SVM decision value exceeds this are verified (0 is the
            SVM's own boundary; lower values trade oracle calls for recall).
        max_new_tokens: oracle reply length.
        oracle_batch_size: oracle generation batch size.
        feature_batch_size: capture batch size.
        chunk_size: tokens per feature chunk when classifying the rest.
        template: oracle prompt (default: :func:`repeat_template`).
        labeller: ``labeller(token_ids) -> list of classes`` used instead of running the oracle
            (e.g. a lookup into stored ground truth); timings then count the lookup only.
        seed: sampling and model random state.
        progress: show progress bars.

    Returns:
        A :class:`Detection`.
    """
    if not 0 < sample_ratio < 1:
        raise InterpError(f"sample_ratio must be in (0, 1), not {sample_ratio}")
    tpl = template or repeat_template(model)
    ids = np.arange(model.d_vocab) if token_ids is None else np.asarray([int(t) for t in token_ids])
    pre = token_classes(model, ids.tolist())
    cand_mask = np.array([c is None for c in pre])
    excluded = pd.DataFrame({"token_id": ids[~cand_mask], "cls": [c for c in pre if c is not None]})
    cand = ids[cand_mask]
    if len(cand) < 4:
        raise InterpError(f"only {len(cand)} tokens can be judged by the oracle")
    rng = np.random.default_rng(seed)
    n_sample = max(2, int(round(sample_ratio * len(cand))))
    sample_pos = np.sort(rng.choice(len(cand), size=n_sample, replace=False))
    in_sample = np.zeros(len(cand), dtype=bool)
    in_sample[sample_pos] = True
    timings: dict[str, float] = {}

    def label(tok: np.ndarray) -> list[str]:
        if labeller is not None:
            return list(labeller(tok.tolist()))
        res = repeat_oracle(model, tok.tolist(), max_new_tokens=max_new_tokens, batch_size=oracle_batch_size,
                            template=tpl, progress=progress)
        return res.table.cls.tolist()

    t0 = time.perf_counter()
    sample_cls = np.array(label(cand[sample_pos]))
    timings["labelling"] = time.perf_counter() - t0
    y_sample = sample_cls == "glitch"

    feat_kw = dict(kinds=kinds, position=position, template=tpl, batch_size=feature_batch_size, progress=progress)
    t_feat = 0.0
    if layers is None:
        n_dist = min(distance_sample, n_sample)
        dist_pos = np.sort(rng.choice(n_sample, size=n_dist, replace=False))
        if y_sample[dist_pos].all() or not y_sample[dist_pos].any():
            raise InterpError("the sample has no glitch tokens (or no normal ones); raise sample_ratio")
        t0 = time.perf_counter()
        f_all = glitch_features(model, cand[sample_pos][dist_pos].tolist(), None, **feat_kw)
        t_feat += time.perf_counter() - t0
        t0 = time.perf_counter()
        distances = layer_distances(f_all, y_sample[dist_pos])
        chosen = key_layers(distances, n_key_layers, key_layer_fraction)
        del f_all
        timings["layer_selection"] = time.perf_counter() - t0
    else:
        chosen = sorted(int(L) for L in layers)
        distances = pd.DataFrame(columns=["layer", "kind", "distance"])

    t0 = time.perf_counter()
    f_sample = glitch_features(model, cand[sample_pos].tolist(), chosen, **feat_kw)
    t_feat += time.perf_counter() - t0
    t0 = time.perf_counter()
    detector = train_detector(f_sample.matrix(), y_sample, n_components=n_components, kernel=kernel, degree=degree,
                              C=C, class_weight=class_weight, seed=seed)
    timings["training"] = time.perf_counter() - t0
    proj_dim = detector.named_steps["pca"].n_components_
    projection = np.zeros((len(cand), proj_dim), dtype=np.float32)
    projection[sample_pos] = detector[:-1].transform(f_sample.matrix())
    del f_sample

    scores = np.full(len(cand), np.nan)
    rest = np.flatnonzero(~in_sample)
    got = score_tokens(model, cand[rest].tolist(), chosen, feat_kw, detector, chunk_size, shard_dir=shard_dir)
    assert got is not None  # rank 0 runs the pipeline
    projection[rest], scores[rest] = got["projection"], got["scores"]
    t_feat += float(got["seconds"][0])
    t_pred = float(got["seconds"][1])
    timings["features"] = t_feat
    timings["prediction"] = t_pred
    predicted = np.zeros(len(cand), dtype=bool)
    predicted[rest] = scores[rest] > decision_threshold

    oracle_cls = np.full(len(cand), "", dtype=object)
    oracle_cls[sample_pos] = sample_cls
    to_verify = np.flatnonzero(predicted)
    t0 = time.perf_counter()
    if len(to_verify):
        oracle_cls[to_verify] = label(cand[to_verify])
    timings["verification"] = time.perf_counter() - t0
    table = pd.DataFrame({
        "token_id": cand,
        "in_sample": in_sample,
        "oracle": oracle_cls,
        "score": scores,
        "predicted": predicted,
        "glitch": oracle_cls == "glitch",
    })
    settings = dict(sample_ratio=sample_ratio, distance_sample=distance_sample, n_key_layers=n_key_layers,
                    key_layer_fraction=key_layer_fraction, kinds=list(kinds), position=position, n_components=n_components,
                    kernel=kernel, degree=degree, C=C, class_weight=class_weight, decision_threshold=decision_threshold,
                    max_new_tokens=max_new_tokens, seed=seed,
                    template=tpl.describe(), labeller="oracle" if labeller is None else "lookup")
    return Detection(table, chosen, distances, projection, timings, excluded, detector, settings)


def score_tokens(model: Model, token_ids: Sequence[int], layers: Sequence[int], feat_kw: dict[str, Any], detector: Pipeline,
                 chunk_size: int = 4096, shard_dir: Optional[Any] = None) -> Optional[dict[str, np.ndarray]]:
    """The features scan: every token's features at ``layers``, its PCA projection and its detector score.

    Tokens go in chunks of ``chunk_size``; with ``shard_dir`` the chunks are shared among ``torchrun``
    ranks (:mod:`interp.distributed`: rank 0 dispatches the scan with the trained detector, each rank
    stores its chunks' projections and scores there, resumable) and rank 0 gathers them.

    Returns:
        ``projection`` ``[n, k]``, ``scores`` ``[n]`` and ``seconds`` (features, prediction), in the
        order of ``token_ids`` (None on ranks other than 0).
    """
    import torch

    from interp import distributed

    ids = [int(t) for t in token_ids]
    if shard_dir is not None:
        distributed.dispatch("interp.glitch.detect:score_tokens", token_ids=ids, layers=list(layers), feat_kw=feat_kw,
                             detector=detector, chunk_size=chunk_size, shard_dir=shard_dir)
    starts = list(range(0, len(ids), chunk_size))
    k = int(detector.named_steps["pca"].n_components_)

    def compute(c: int) -> dict[str, torch.Tensor]:
        t0 = time.perf_counter()
        X = glitch_features(model, ids[starts[c] : starts[c] + chunk_size], list(layers), **feat_kw).matrix()
        t1 = time.perf_counter()
        out = {"projection": torch.from_numpy(np.ascontiguousarray(detector[:-1].transform(X), dtype=np.float32)),
               "scores": torch.from_numpy(np.asarray(detector_scores(detector, X), dtype=np.float64))}
        out["seconds"] = torch.tensor([t1 - t0, time.perf_counter() - t1], dtype=torch.float64)
        return out

    key = {"pass": "glitch-features-v1", "model": model.weight_hash, "layers": list(layers), "chunk": chunk_size,
           "ids": hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:20],
           "detector": _fitted_digest(detector)}
    parts = distributed.map_chunks(len(starts), compute, None if shard_dir is None else Path(shard_dir), key,
                                   desc="glitch features")
    if parts is None:
        return None
    if not parts:
        return {"projection": np.zeros((0, k), dtype=np.float32), "scores": np.zeros(0), "seconds": np.zeros(2)}
    return {"projection": torch.cat([c["projection"] for c in parts]).numpy(),
            "scores": torch.cat([c["scores"] for c in parts]).numpy(),
            "seconds": torch.stack([c["seconds"] for c in parts]).sum(0).numpy()}


def _fitted_digest(detector: Pipeline) -> str:
    """A digest of a fitted detector's learned numbers (PCA axes, SVM coefficients)."""
    h = hashlib.sha256(repr(detector.get_params()).encode())
    for step in detector.named_steps.values():
        for attr in ("mean_", "scale_", "components_", "dual_coef_", "support_vectors_", "intercept_"):
            v = getattr(step, attr, None)
            if isinstance(v, np.ndarray):
                h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()[:20]


def precision_recall(found: Sequence[int], truth: Sequence[int]) -> dict[str, float]:
    """Precision, recall and F1 of a found set of token ids against the true glitch set."""
    f, t = set(int(x) for x in found), set(int(x) for x in truth)
    tp = len(f & t)
    p = tp / len(f) if f else 0.0
    r = tp / len(t) if t else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "n_found": len(f), "n_true": len(t)}
