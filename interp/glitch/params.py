"""The parameters of ``interp run glitch`` (one line each; ``interp run glitch --help`` lists them).

Under ``--quick`` the glitch analysis reads its ``quick_*`` parameters instead of the full sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from interp.params import Param, Params

FEATURE_KINDS = ("pattern", "mlp_gate", "mlp_data")


def _folder(path: str) -> Optional[str]:
    """'' (the packaged ground truth) or an existing folder."""
    return None if not path or Path(path).expanduser().is_dir() else "no such folder"


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


def _threshold(text: Any) -> Optional[str]:
    t = str(text).strip()
    try:
        float(t[:-3] or 1.0) if t.endswith("rms") else float(t)
    except ValueError:
        return "'rms', '<f>rms' or a number"
    return None


def _prompts(text: Any) -> Optional[str]:
    from interp.glitch.consensus import ORACLE_PROMPTS, SINGLE_PROMPT

    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names or names[0] != SINGLE_PROMPT or any(n not in ORACLE_PROMPTS for n in names):
        return f"comma-separated names from {', '.join(ORACLE_PROMPTS)}, starting with {SINGLE_PROMPT}"
    return None


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
    Param("ground_truth_dir", "str", "", check=_folder, allows="'' or an existing folder", help="folder of a stored ground truth ('' for the packaged one)"),
    Param("quick_vocab", "int", 4096, min=100, unit="tokens", help="random vocabulary subset searched under --quick"),
    Param("calibration_tokens", "int", 512, min=1, unit="tokens", help="tokens the real oracle is timed on (stored oracle)"),
    Param("magikarp_share", "float", 0.02, min=0.005, max=0.02, unit="share",
          help="lowest share of the candidates by the Magikarp indicator that its verification checks (paper: 0.5-2%)"),
    Param("quick_magikarp_share", "float", 0.005, min=0.005, max=0.02, unit="share", help="magikarp_share under --quick"),
    Param("sweep_ratios", "str", "0.01,0.02,0.05,0.1,0.2", check=lambda t: _numbers(t, 0, 1, open_lo=True) or
          (None if all(float(x) < 1 for x in str(t).split(",") if x.strip()) else "each ratio must be below 1"),
          help="labelled shares swept, comma-separated"),
    Param("repair_threshold", "str", "rms", check=_threshold,
          help="activation threshold m per hook kind: 'rms', '<f>rms' (f x the fitting tokens' RMS) or a number (paper: 1)"),
    Param("always_share", "float", 0.99, min=0, max=1, unit="share",
          help="share of normal tokens on which an always-active neuron is above m"),
    Param("rule_alpha", "float", 4.0, min=0, min_open=True, help="rule-based repair: divisor of firing never-active neurons"),
    Param("rule_beta", "float", 1.5, min=0, help="rule-based repair: added to |x| of always-active neurons"),
    Param("repair_fit_normal", "int", 1000, min=1, unit="tokens", help="normal tokens the repair's neuron sets are fitted on"),
    Param("quick_repair_fit_normal", "int", 256, min=1, unit="tokens", help="repair_fit_normal under --quick"),
    Param("n_repair_glitch", "int", 200, min=1, unit="tokens", help="glitch tokens the repair is measured on"),
    Param("n_repair_normal", "int", 400, min=1, unit="tokens", help="normal tokens the repair is measured on"),
    Param("quick_repair_glitch", "int", 48, min=1, unit="tokens", help="n_repair_glitch under --quick"),
    Param("quick_repair_normal", "int", 96, min=1, unit="tokens", help="n_repair_normal under --quick"),
    Param("recall_target", "float", 0.8, min=0, max=1, min_open=True, unit="share", help="recall the cost comparison aims at"),
    Param("oracle_prompts", "str", "few_shot,other_examples,paper_few_shot,paper", check=_prompts,
          help="voting oracle prompts (interp.glitch.consensus.ORACLE_PROMPTS), the single-prompt label first"),
    Param("min_follow", "float", 0.8, min=0, max=1, unit="share",
          help="a prompt votes only if the model repeats this share of common words with it"),
    Param("consensus_decision_threshold", "float", 0.0, help="consensus SVM decision value above which a token is verified"),
    Param("consensus_threshold_sweep", "str", "-1.5,-1.25,-1.0,-0.75,-0.5,-0.25,0.0,0.25",
          check=lambda t: _numbers(t, -1e9, 1e9), help="consensus decision thresholds swept, comma-separated"),
    Param("search_sample_ratio", "float", 0.05, min=0, max=1, min_open=True, unit="share",
          help="ranked search: share of candidates labelled by the consensus cascade at random"),
    Param("quick_search_sample_ratio", "float", 0.1, min=0, max=1, min_open=True, unit="share",
          help="search_sample_ratio under --quick"),
    Param("search_aim", "float", 0.9, min=0, max=1, min_open=True, unit="share",
          help="ranked search: share of glitch tokens its cross-fitted cut-off aims at"),
    Param("search_aim_sweep", "str", "0.7,0.75,0.8,0.85,0.9,0.95", check=lambda t: _numbers(t, 0, 1, open_lo=True),
          help="ranked search: aims swept, comma-separated"),
    Param("search_budget", "float", 0.5, min=0, max=1, null="no budget: the cut-off alone stops", unit="share",
          help="ranked search: share of the exhaustive consensus oracle's forwarded tokens it may spend (0 or null: no budget)"),
    Param("search_C", "float", 0.03, min=0, min_open=True, help="ranked search: logistic regression's inverse regularisation"),
    Param("eval_tokens", "int", 2048, min=0, unit="tokens",
          help="random evaluation tokens outside the sample without stored ground truth (0: all; stored: all)"),
    Param("quick_eval_tokens", "int", 768, min=0, unit="tokens", help="evaluation tokens under --quick (stored ground truth)"),
    Param("quick_eval_tokens_unlabelled", "int", 128, min=0, unit="tokens",
          help="evaluation tokens under --quick without stored ground truth"),
    Param("quick_vocab_unlabelled", "int", 1024, min=100, unit="tokens",
          help="random vocabulary subset under --quick without stored ground truth"),
    Param("agreement_tokens", "int", 1024, min=0, unit="tokens", help="random candidates every oracle prompt asks"),
    Param("quick_agreement_tokens", "int", 32, min=0, unit="tokens", help="agreement_tokens under --quick"),
])
