"""``interp ablate-final-heads``: recall before and after ablating final-layer suppressor heads."""

from __future__ import annotations

import sys
import time
from typing import Optional, Sequence, TextIO, Union

import torch

from interp.model import Model
from interp.recall.ablation import Head, head_name, parse_heads
from interp.recall.activations import collect_activations
from interp.recall.facts import build_prompts, load_relations
from interp.recall.mitigation import mitigation_table, select_suppressor_heads


def auto_suppressor_heads(
    model: Model, quick: bool = False, shots: int = 3, relations: Optional[Sequence[str]] = None
) -> list[Head]:
    """The final-layer heads that suppress correct answers, chosen on the packaged train facts.

    Args:
        model: the model.
        quick: first 16 facts per relation, canonical template only (otherwise all facts, 3 templates).
        shots: demonstrations in the few-shot prompts (zero- and few-shot train prompts are pooled).
        relations: relation names (default: all).

    Returns:
        The heads (possibly none), for :func:`interp.recall.ablate_heads`.
    """
    rels = load_relations(relations)
    templates, max_facts = ([0], 16) if quick else ([0, 1, 2], None)
    last = model.n_layers - 1
    train = []
    with torch.no_grad():
        for s in (0, shots):
            ps = build_prompts(model, rels, shots=s, templates=templates, max_facts=max_facts, split="train")
            train.append(collect_activations(model, ps, layers=[last]))
        chosen, _ = select_suppressor_heads(model, train)
    return chosen


def ablate_final_heads(
    model: Model,
    heads: Union[str, Sequence[Union[str, Head]]] = "auto",
    quick: bool = False,
    seed: int = 0,
    shots: int = 3,
    relations: Optional[Sequence[str]] = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print test-fact accuracy and answer probability before/after ablating final-layer heads.

    Args:
        model: the model.
        heads: ``"auto"`` (chosen on the train facts, :func:`select_suppressor_heads`) or ``"L.H,..."``.
        quick: first 16 facts per relation, canonical template only (otherwise all facts, 3 templates).
        seed: recorded for reproducibility (the procedure is deterministic).
        shots: demonstrations in the few-shot form.
        relations: relation names (default: all).
        out: where the table is printed.

    Returns:
        The exit status (0).
    """
    with torch.no_grad():
        return _ablate_final_heads(model, heads, quick, seed, shots, relations, out)


def _ablate_final_heads(model: Model, heads: Union[str, Sequence[Union[str, Head]]], quick: bool, seed: int, shots: int,
                        relations: Optional[Sequence[str]], out: TextIO) -> int:
    t0 = time.perf_counter()
    if not isinstance(heads, str) or heads.strip().lower() != "auto":
        chosen: list[Head] = parse_heads(model, heads)
        auto = False
    else:
        chosen, auto = [], True
    rels = load_relations(relations)
    templates = [0] if quick else [0, 1, 2]
    max_facts = 16 if quick else None
    last = model.n_layers - 1
    if auto:
        chosen = auto_suppressor_heads(model, quick=quick, shots=shots, relations=relations)
    test = {}
    for label, s in (("zero-shot", 0), (f"{shots}-shot", shots)):
        ps = build_prompts(model, rels, shots=s, templates=templates, max_facts=max_facts, split="test")
        test[label] = collect_activations(model, ps, layers=[last])
    table = mitigation_table(model, test, chosen)
    g = table[table["relation"] == "all"]
    how = "chosen on train facts" if auto else "given"
    print(f"model {model.spec}; ablated heads ({how}, zero ablation): {', '.join(map(head_name, chosen)) or 'none'}", file=out)
    print(f"test facts: {int(g['n'].iloc[0])} prompts per form; seed {seed}", file=out)
    print(f"{'prompts':<11} {'accuracy before':>16} {'after':>8} {'P(answer) before':>17} {'after':>8}", file=out)
    for r in g.itertuples():
        print(f"{r.shots:<11} {r.accuracy_base:>16.3f} {r.accuracy_mitigated:>8.3f} {r.answer_prob_base:>17.4f} "
              f"{r.answer_prob_mitigated:>8.4f}", file=out)
    print(f"({time.perf_counter() - t0:.0f}s)", file=out)
    return 0
