"""Glitch tokens (GlitchProber, Zhang et al. 2024): tokens a model cannot repeat back.

Modules, one per concept of the paper: :mod:`~interp.glitch.oracle` (the repeat oracle),
:mod:`~interp.glitch.consensus` (several oracle prompts, every verdict, consensus labels),
:mod:`~interp.glitch.scan` (exhaustive search, the stored ground truth and consensus verdicts),
:mod:`~interp.glitch.features` (attention-pattern / MLP-gate / MLP-data features),
:mod:`~interp.glitch.distance` (per-layer Wasserstein distances and key layers),
:mod:`~interp.glitch.detect` (PCA + SVM detector with oracle verification),
:mod:`~interp.glitch.search` (a ranked search on token statistics with a cross-fitted cut-off),
:mod:`~interp.glitch.repair` (the paper's gate/up key-neuron repair), :mod:`~interp.glitch.magikarp` and
:mod:`~interp.glitch.baselines` (baselines), :mod:`~interp.glitch.pipeline` (``interp run glitch``).
"""

from interp.glitch.consensus import consensus_labels, consensus_oracle, oracle_templates
from interp.glitch.detect import glitch_prober, precision_recall
from interp.glitch.oracle import repeat_oracle, repeat_template
from interp.glitch.repair import key_neurons, repair_hooks
from interp.glitch.scan import load_consensus, load_ground_truth
from interp.glitch.search import ranked_search

__all__ = ["consensus_labels", "consensus_oracle", "oracle_templates", "glitch_prober", "precision_recall", "repeat_oracle", "repeat_template", "key_neurons", "repair_hooks",
           "load_ground_truth", "load_consensus", "ranked_search"]
