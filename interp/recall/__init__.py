"""Factual recall mechanisms (Lv et al. 2024, arXiv 2403.19521).

Modules, one per concept of the paper: :mod:`~interp.recall.facts` (tasks and templates),
:mod:`~interp.recall.activations` (the capture pass), :mod:`~interp.recall.logit_lens`,
:mod:`~interp.recall.argument_heads`, :mod:`~interp.recall.mlp_decomposition`,
:mod:`~interp.recall.anti_overconfidence`, :mod:`~interp.recall.mitigation`,
:mod:`~interp.recall.ablation` (the user-facing :func:`ablate_heads` context manager).
"""

from interp.recall.ablation import ablate_heads, parse_heads

__all__ = ["ablate_heads", "parse_heads"]
