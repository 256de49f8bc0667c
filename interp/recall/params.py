"""The parameters of ``interp run recall`` (one line each; ``interp run recall --help`` lists them)."""

from __future__ import annotations

from typing import Any, Optional

from interp.corpus import ALLOWS, corpus_problem
from interp.frequency import SOURCE_ALLOWS, source_problem
from interp.params import Param, Params


def _check(p: dict[str, Any]) -> Optional[str]:
    """Joint checks against the packaged facts (a user's facts file is checked when it is read)."""
    if p["facts_file"] is not None:
        return None
    from interp.recall.facts import load_relations

    rels = load_relations(None, None)
    names = [r.name for r in rels]
    bad = [r for r in (p["relations"] or []) if r not in names]
    if bad:
        return f"--set relations: unknown {', '.join(bad)}; allowed: {', '.join(names)}"
    chosen = [r for r in rels if not p["relations"] or r.name in p["relations"]]
    demos = min(len(r.demos) for r in chosen)
    if p["shots"] > demos:
        return f"--set shots={p['shots']}: too large; allowed: 1..{demos} (the demonstrations each relation has)"
    return None


PARAMS = Params("recall", [
    Param("relations", "str_list", None, null="every relation in the facts file", help="relations to analyse"),
    Param("facts_file", "path", None, null="the packaged facts", help="a facts JSON in the packaged layout"),
    Param("templates", "int_list", None, quick=[0], min=0, max=9, null="all ten lead-ins", unit="lead-in index",
          help="prompt lead-ins (0, the canonical one, is always added)"),
    Param("max_facts", "int", None, quick=24, min=2, null="all facts", unit="facts",
          help="first N facts of each relation (train and test alternate, so N >= 2 keeps both)"),
    Param("shots", "int", 3, min=1, unit="demonstrations", help="demonstrations in the few-shot form"),
    Param("analyse", "choice", "known", choices=["known", "all"],
          help="facts the mechanism analyses use: known (argmax is the answer) or all"),
    Param("top_k_heads", "int", 5, min=1, unit="heads", help="argument heads named and ablated",
          model_max=lambda m, p: max(1, (m.n_layers - int(p["min_arg_layer"])) * m.n_heads)),
    Param("min_arg_layer", "int", 1, min=0, unit="layer", help="argument heads are sought from this layer on",
          model_max=lambda m, p: m.n_layers - 1),
    Param("n_random", "int", None, quick=3, min=1, null="10", unit="draws", help="random-head draws for the baseline"),
    Param("final_layers", "int", 2, min=1, unit="layers", help="last layers examined for anti-overconfidence",
          model_max=lambda m, p: m.n_layers),
    Param("lens_stride", "int", None, quick=2, min=1, null="1 (every layer)", unit="layers",
          help="logit lens after every n-th layer (the last three always)"),
    Param("frequency_source", "str", "wikipedia", check=source_problem,
          allows=SOURCE_ALLOWS, help="token counts: wikipedia, wordfreq, model (the model's own mean "
          "prediction) or a text file"),
    Param("text_corpus", "str", "wikipedia", check=corpus_problem, allows=ALLOWS, help="held-out text for the perplexity cost: wikipedia, generic or a text file/folder"),
    Param("ppl_texts", "int", None, quick=8, min=1, null="200", unit="paragraphs",
          help="held-out paragraphs for the perplexity cost"),
    Param("selection_texts", "int", None, quick=8, min=0, null="128", unit="paragraphs",
          help="training paragraphs for the mitigation's perplexity constraint"),
    Param("ppl_bound_z", "float", 1.645, min=0.0, unit="standard errors",
          help="the mitigation's perplexity cost on the training paragraphs is bounded at its estimate plus "
          "this many standard errors over paragraphs (0: the estimate itself)"),
    Param("independent_facts", "int", None, quick=12, min=1, null="all", unit="facts",
          help="independent country facts per relation (countryinfo)"),
    Param("head_scales", "int", None, quick=1, min=0, max=3, null="3", unit="factors",
          help="rescalings of the chosen heads tried besides removing them (0.5, then 0.25, 0.75)"),
    Param("mitigation_method", "choice", "auto", choices=["auto", "heads", "frequency", "both", "none"],
          help="mitigation: auto (best on train facts), heads, frequency, both or none"),
    Param("mitigation_mode", "choice", "zero", choices=["zero", "scale", "mean"], help="how suppressor heads are ablated"),
    Param("mitigation_scale", "float", 0.0, unit="factor", help="head output factor for mitigation_mode=scale"),
    Param("max_suppressor_heads", "int", None, min=1, null="no limit", unit="heads",
          help="most final-layer heads the mitigation may ablate"),
    Param("selection_metric", "choice", "answer_prob", choices=["answer_prob", "accuracy"],
          help="what the suppressor choice maximises on train facts"),
    Param("batch_size", "int", 32, min=1, max=4096, unit="prompts", help="prompts per forward pass"),
], check_all=_check)
