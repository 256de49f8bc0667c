"""The parameters of ``interp run glitch`` (one line each; ``interp run glitch --help`` lists them).

Under ``--quick`` the glitch analysis reads its ``quick_*`` parameters instead of the full sizes.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from interp.params import Param, Params

FEATURE_KINDS = ("pattern", "mlp_gate", "mlp_data")


def _numbers(text: Any, lo: float, hi: float, open_lo: bool = False) -> Optional[str]:
    try:
        vals = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        return "not comma-separated numbers"
    if not vals:
        return "empty"
    if any(v < lo or v > hi or (open_lo and v == lo) for v in vals):
        return f"each number must be in {'(' if open_lo else '['}{lo:g}, {hi:g}]"
    return None


def _kinds(text: Any) -> Optional[str]:
    ks = [k.strip() for k in str(text).split(",") if k.strip()]
    bad = [k for k in ks if k not in FEATURE_KINDS]
    return f"comma-separated feature kinds from {', '.join(FEATURE_KINDS)}" if bad or not ks else None


def _shots(text: Any) -> Optional[str]:
    try:
        sets = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        sets = None
    ok = isinstance(sets, list) and sets and all(isinstance(x, list) and x and all(isinstance(w, str) for w in x) for x in sets)
    return None if ok else "a non-empty JSON list of non-empty lists of strings"


PARAMS = Params("glitch", [
    Param("sample_ratio", "float", 0.1, min=0, max=1, min_open=True, unit="share", help="share of candidates the oracle labels"),
    Param("distance_sample", "int", 1024, min=2, unit="tokens", help="tokens per class for the layer distances"),
    Param("n_key_layers", "int", 0, min=0, unit="layers", help="key layers used (0: key_layer_fraction of the depth)",
          model_max=lambda m, p: m.n_layers),
    Param("key_layer_fraction", "float", 0.2, min=0, max=1, min_open=True, unit="share", help="share of layers kept as key layers"),
    Param("kinds", "str", "pattern,mlp_gate,mlp_data", check=_kinds, help="feature kinds, comma-separated"),
    Param("position", "choice", "token", choices=["token", "last"], help="where features are read: the token or the prompt end"),
    Param("n_components", "int", 75, min=1, unit="components", help="PCA components before the SVM"),
    Param("kernel", "choice", "poly", choices=["linear", "poly", "rbf", "sigmoid"], help="SVM kernel"),
    Param("degree", "int", 3, min=1, max=10, help="polynomial kernel degree"),
    Param("C", "float", 1.0, min=0, min_open=True, help="SVM regularisation"),
    Param("class_weight", "choice", "balanced", choices=["balanced", ""], help="SVM class weights ('' for none)"),
    Param("decision_threshold", "float", 0.0, help="SVM decision value above which a token is predicted glitch"),
    Param("threshold_sweep", "str", "-1.0,-0.75,-0.5,-0.25,0.0,0.25,0.5", check=lambda t: _numbers(t, -1e9, 1e9),
          help="decision thresholds swept, comma-separated"),
    Param("max_new_tokens", "int", 10, min=1, max=512, unit="tokens", help="tokens the repeat oracle generates"),
    Param("oracle_batch_size", "int", 128, min=1, max=8192, unit="prompts", help="oracle prompts per batch"),
    Param("feature_batch_size", "int", 32, min=1, max=8192, unit="prompts", help="feature prompts per batch"),
    Param("oracle", "choice", "auto", choices=["auto", "run", "stored"],
          help="oracle answers: run the model, look up the stored ground truth, or auto (stored under --quick)"),
    Param("ground_truth_dir", "str", "", help="folder of a stored ground truth ('' for the packaged one)"),
    Param("quick_vocab", "int", 4096, min=100, unit="tokens", help="random vocabulary subset searched under --quick"),
    Param("calibration_tokens", "int", 512, min=1, unit="tokens", help="tokens the real oracle is timed on (stored oracle)"),
    Param("magikarp_share", "float", 0.02, min=0, max=1, min_open=True, unit="share",
          help="share of the vocabulary the Magikarp baseline verifies"),
    Param("sweep_ratios", "str", "0.01,0.02,0.05,0.1,0.2", check=lambda t: _numbers(t, 0, 1, open_lo=True) or
          (None if all(float(x) < 1 for x in str(t).split(",") if x.strip()) else "each ratio must be below 1"),
          help="labelled shares swept, comma-separated"),
    Param("repair_threshold", "float", 1.0, min=0, help="activation gap (in std) above which a neuron is key"),
    Param("always_share", "float", 0.99, min=0, max=1, unit="share", help="share of glitch tokens a key neuron fires on"),
    Param("rule_alpha", "float", 4.0, min=0, help="rule-based repair: threshold in std"),
    Param("rule_beta", "float", 1.5, min=0, help="rule-based repair: scale factor"),
    Param("repair_fit_normal", "int", 1000, min=1, unit="tokens", help="normal tokens the repair statistics use"),
    Param("n_repair_glitch", "int", 200, min=1, unit="tokens", help="glitch tokens the repair is measured on"),
    Param("n_repair_normal", "int", 400, min=1, unit="tokens", help="normal tokens the repair is measured on"),
    Param("quick_repair_glitch", "int", 48, min=1, unit="tokens", help="n_repair_glitch under --quick"),
    Param("quick_repair_normal", "int", 96, min=1, unit="tokens", help="n_repair_normal under --quick"),
    Param("recall_target", "float", 0.8, min=0, max=1, min_open=True, unit="share", help="recall the cost comparison aims at"),
    Param("stability_tokens", "int", 1024, min=0, unit="tokens", help="tokens the oracle-stability check re-asks"),
    Param("quick_stability_tokens", "int", 256, min=0, unit="tokens", help="stability_tokens under --quick"),
    Param("stability_shots", "str", '[["apple", " house", "tion"], ["hello", " world", "ing", "cat", " blue"]]',
          check=_shots, help="other worked examples for the oracle-stability check (JSON)"),
])
