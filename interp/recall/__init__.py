"""Factual recall mechanisms (Lv et al. 2024, arXiv 2403.19521).

Modules, one per concept of the paper: :mod:`~interp.recall.facts` (tasks, templates, the
independent country facts), :mod:`~interp.recall.activations` (the capture pass),
:mod:`~interp.recall.logit_lens` (with the final layer split into attention and MLP),
:mod:`~interp.recall.argument_heads`, :mod:`~interp.recall.mlp_decomposition`,
:mod:`~interp.recall.anti_overconfidence`, :mod:`~interp.recall.mitigation` (choosing and applying
the mitigation: :func:`mitigate`), :mod:`~interp.recall.ablation` (the :func:`ablate_heads` context
manager), :mod:`~interp.recall.claims` (the paper's claims and their verdicts),
:mod:`~interp.recall.pipeline` (the steps in the paper's order).
"""

from interp.recall.ablation import ablate_heads, parse_heads
from interp.recall.mitigation import Mitigation, mitigate

__all__ = ["ablate_heads", "parse_heads", "mitigate", "Mitigation"]
