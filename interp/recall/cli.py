"""``interp ablate-final-heads``: recall before and after the mitigation chosen on the train facts.

The choice is the mitigation's (:func:`interp.recall.mitigation.auto_mitigation`, the same that
``with interp.recall.mitigate(model, method=...)`` applies); this module only prints it, measured
where ``interp run recall`` measures it: the test facts, the independent country facts
(countryinfo), zero- and few-shot, and the perplexity of held-out Wikipedia text, at the sizes of
that run (``--quick`` or full).
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
from interp.recall import sources
from interp.recall.mitigation import (Mitigation, auto_mitigation, mitigation_table, perplexity_cost, perplexity_from, recall_params,
                                      text_nlls_many, text_tail)


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
    """Print accuracy and answer probability on test and independent facts, and the held-out
    perplexity, before/after the mitigation.

    Args:
        model: the model.
        heads: ``"auto"`` (the mitigation chosen on the train facts by ``method``) or ``"L.H,..."``
            (those heads zero-ablated, no choice made).
        quick: the sizes of ``interp run recall --quick`` (the first 24 facts per relation, the
            canonical template, 12 country facts per relation, 8 held-out paragraphs); otherwise
            the full run's (every fact, all ten lead-ins, every country fact, 200 paragraphs).
        seed: recorded for reproducibility (the procedure is deterministic).
        shots: demonstrations in the few-shot form.
        relations: relation names (default: all).
        out: where the table is printed.
        method: ``auto``, ``heads``, ``frequency``, ``both`` (see :func:`interp.recall.mitigate`).
        frequency_source: token counts for the frequency direction.

    Returns:
        The exit status (0).
    """
    from interp.recall.pipeline import independent_activations, prompt_templates

    p = recall_params(quick, shots, relations, frequency_source=frequency_source)  # the sizes of interp run recall
    with torch.no_grad():
        t0 = time.perf_counter()
        if not isinstance(heads, str) or heads.strip().lower() != "auto":
            mit, how = Mitigation("heads", parse_heads(model, heads)), "given"
        else:
            print(f"choosing the mitigation on the train facts ({'quick' if quick else 'full'} sizes of interp run recall) ...",
                  file=sys.stderr, flush=True)
            mit = auto_mitigation(model, method, quick=quick, shots=shots, relations=relations, frequency_source=frequency_source)
            how = f"chosen on train facts, method={method}"
        print(f"measuring {mit.describe()} on the test and independent facts and held-out text ...", file=sys.stderr, flush=True)
        rels = load_relations(p["relations"])
        sets = {}
        for label, s in (("zero-shot", 0), (f"{shots}-shot", shots)):
            ps = build_prompts(model, rels, shots=s, templates=prompt_templates(p), max_facts=p["max_facts"], split="test")
            sets[("test", label)] = collect_activations(model, ps, layers=[model.n_layers - 1], batch_size=int(p["batch_size"]))
        sets.update({("independent", k): v for k, v in independent_activations(model, p).items()})
        table = mitigation_table(model, sets, mit)
        texts, text_id = sources.texts(p["text_corpus"], "heldout")
        texts = texts[: int(p["ppl_texts"])]
        tail = text_tail(model, texts, model.n_layers - 1) if mit.start_layer(model) == model.n_layers - 1 else None
        (nll0, n_tok), (nll1, _) = text_nlls_many(model, texts, [Mitigation(), mit], tail=tail)
        ppl_base, ppl_mit = perplexity_from(nll0, n_tok), perplexity_from(nll1, n_tok)
        upper = perplexity_cost(nll0, nll1, n_tok)[1]
    g = table[table["relation"] == "all"]
    print(f"model {model.spec}; mitigation ({how}): {mit.describe()}", file=out)
    print(f"seed {seed}; test facts: held out from the choice; independent facts: countryinfo", file=out)
    print(f"{'facts':<12} {'prompts':<10} {'n':>5} {'accuracy before':>16} {'after':>8} {'P(answer) before':>17} {'after':>8}", file=out)
    for r in g.itertuples():
        print(f"{r.facts:<12} {r.shots:<10} {r.n:>5} {r.accuracy_base:>16.3f} {r.accuracy_mitigated:>8.3f} "
              f"{r.answer_prob_base:>17.4f} {r.answer_prob_mitigated:>8.4f}", file=out)
    print(f"perplexity ({text_id}, {len(texts)} paragraphs): {ppl_base:.3f} before, {ppl_mit:.3f} after "
          f"({ppl_mit / ppl_base - 1:+.2%}; one-sided 95% bound over paragraphs {upper:+.2%})", file=out)
    print(f"({time.perf_counter() - t0:.0f}s)", file=out)
    return 0
