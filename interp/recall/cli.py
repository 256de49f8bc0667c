"""``interp ablate-final-heads``: recall before and after the mitigation chosen on the train facts.

The choice is the mitigation's (:func:`interp.recall.mitigation.auto_mitigation`, the same that
``with interp.recall.mitigate(model, method=...)`` applies); this module only prints it.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, Sequence, TextIO, Union

import torch

from interp.model import Model
from interp.recall.ablation import Head, parse_heads
from interp.recall.activations import collect_activations
from interp.recall.facts import build_prompts, load_relations
from interp.recall.mitigation import Mitigation, auto_mitigation, mitigation_table


def ablate_final_heads(
    model: Model,
    heads: Union[str, Sequence[Union[str, Head]]] = "auto",
    quick: bool = False,
    seed: int = 0,
    shots: int = 3,
    relations: Optional[Sequence[str]] = None,
    out: TextIO = sys.stdout,
    method: str = "auto",
    frequency_source: str = "wikipedia",
) -> int:
    """Print test-fact accuracy and answer probability before/after the mitigation.

    Args:
        model: the model.
        heads: ``"auto"`` (the mitigation chosen on the train facts by ``method``) or ``"L.H,..."``
            (those heads zero-ablated, no choice made).
        quick: first 16 facts per relation, canonical template only (otherwise all facts, 3 templates).
        seed: recorded for reproducibility (the procedure is deterministic).
        shots: demonstrations in the few-shot form.
        relations: relation names (default: all).
        out: where the table is printed.
        method: ``auto``, ``heads``, ``frequency``, ``both`` (see :func:`interp.recall.mitigate`).
        frequency_source: token counts for the frequency direction.

    Returns:
        The exit status (0).
    """
    with torch.no_grad():
        t0 = time.perf_counter()
        if not isinstance(heads, str) or heads.strip().lower() != "auto":
            mit, how = Mitigation("heads", parse_heads(model, heads)), "given"
        else:
            mit = auto_mitigation(model, method, quick=quick, shots=shots, relations=relations, frequency_source=frequency_source)
            how = f"chosen on train facts, method={method}"
        rels = load_relations(relations)
        templates, max_facts = ([0], 16) if quick else ([0, 1, 2], None)
        sets = {}
        for label, s in (("zero-shot", 0), (f"{shots}-shot", shots)):
            ps = build_prompts(model, rels, shots=s, templates=templates, max_facts=max_facts, split="test")
            sets[("test", label)] = collect_activations(model, ps, layers=[model.n_layers - 1])
        table = mitigation_table(model, sets, mit)
    g = table[table["relation"] == "all"]
    print(f"model {model.spec}; mitigation ({how}): {mit.describe()}", file=out)
    print(f"test facts: {int(g['n'].iloc[0])} prompts per form; seed {seed}", file=out)
    print(f"{'prompts':<11} {'accuracy before':>16} {'after':>8} {'P(answer) before':>17} {'after':>8}", file=out)
    for r in g.itertuples():
        print(f"{r.shots:<11} {r.accuracy_base:>16.3f} {r.accuracy_mitigated:>8.3f} {r.answer_prob_base:>17.4f} "
              f"{r.answer_prob_mitigated:>8.4f}", file=out)
    print(f"({time.perf_counter() - t0:.0f}s)", file=out)
    return 0
