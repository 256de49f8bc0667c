"""``interp run recall``: factual-recall mechanisms (Lv et al. 2024, arXiv 2403.19521).

Stages, each stored so an interrupted run resumes:

1. ``activations``: one capture pass per relation and shot form (zero-shot; k-shot with the
   demonstrations as a shared KV-cached prefix), last position only.
2. known facts: the answer's first token is the argmax in the canonical zero-shot template.
3. logit lens per relation (:mod:`interp.recall.logit_lens`).
4. argument heads and their mean-ablation check (:mod:`interp.recall.argument_heads`).
5. MLP decomposition (:mod:`interp.recall.mlp_decomposition`).
6. anti-overconfidence in the final layers (:mod:`interp.recall.anti_overconfidence`).
7. mitigation: suppressor heads chosen on train facts, measured on test facts and generic text
   (:mod:`interp.recall.mitigation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from interp.corpus import GENERIC_ID, generic_texts, read_texts
from interp.errors import InterpError
from interp.model import Model
from interp.recall.params import PARAMS
from interp.recall.ablation import ablate_heads, head_name
from interp.recall.activations import RecallActivations, collect_activations
from interp.recall.anti_overconfidence import anti_overconfidence_table, next_token_stats, token_log_frequency
from interp.recall.argument_heads import argument_ablation, argument_head_scores, top_argument_heads
from interp.recall.facts import build_prompts, load_relations
from interp.recall.figures import (anti_overconfidence_figure, argument_ablation_figure, argument_heads_figure,
                                   logit_lens_figure, mitigation_figure, mlp_decomposition_figure)
from interp.recall.logit_lens import final_drop, logit_lens_table
from interp.recall.mitigation import mitigation_table, select_suppressor_heads
from interp.recall.mlp_decomposition import mlp_decomposition_tables

DESCRIPTION = "factual recall (Lv et al. 2024): argument heads, MLP activation/function application, final-layer anti-overconfidence, mitigation"

# the parameters are declared (type, range, default, quick default, unit, meaning) in interp/recall/params.py
DEFAULTS: dict[str, Any] = PARAMS.defaults()

QUICK: dict[str, Any] = PARAMS.quick_values()
FULL = {"templates": list(range(10)), "max_facts": None, "n_random": 10, "generic_texts": None}


def _resolve(params: dict[str, Any], quick: bool) -> dict[str, Any]:
    out = dict(DEFAULTS)
    out.update({k: v for k, v in params.items() if k in DEFAULTS})
    for k, v in (QUICK if quick else FULL).items():
        if out.get(k) is None:
            out[k] = v
    if out["relations"] is not None and isinstance(out["relations"], str):
        out["relations"] = [r.strip() for r in out["relations"].split(",") if r.strip()]
    if int(out["top_k_heads"]) < 1:
        raise InterpError("top_k_heads must be at least 1")
    if int(out["final_layers"]) < 1:
        raise InterpError("final_layers must be at least 1")
    if out["analyse"] not in ("known", "all"):
        raise InterpError(f"analyse must be 'known' or 'all', not {out['analyse']!r}")
    if out["mitigation_mode"] not in ("zero", "scale", "mean"):
        raise InterpError(f"mitigation_mode must be zero, scale or mean, not {out['mitigation_mode']!r}")
    return out


def _known(acts: RecallActivations) -> set[tuple[str, int]]:
    ok = acts.correct
    return {(f.relation, f.index) for f, t, c in zip(acts.prompts.facts, acts.prompts.templates, ok.tolist()) if t == 0 and c}


def facts_table(model: Model, zero: RecallActivations, few: RecallActivations) -> pd.DataFrame:
    """One row per fact: split, whether the model knows it zero- and few-shot (canonical template)."""
    rows = {}
    for label, acts in (("zero", zero), ("few", few)):
        for f, t, c, p, pr in zip(acts.prompts.facts, acts.prompts.templates, acts.correct.tolist(), acts.pred.tolist(),
                                  acts.answer_prob.tolist()):
            if t != 0:
                continue
            r = rows.setdefault((f.relation, f.index), {"relation": f.relation, "subject": f.subject, "answer": f.answer,
                                                         "split": f.split})
            r[f"known_{label}_shot"] = bool(c)
            r[f"prediction_{label}_shot"] = model.tokenizer.decode([p])
            r[f"answer_prob_{label}_shot"] = pr
    return pd.DataFrame(list(rows.values()))


def _templates(p: dict[str, Any]) -> list[int]:
    return list(p["templates"]) if 0 in p["templates"] else [0] + list(p["templates"])


def prepare(model: Model, run: Any, p: dict[str, Any]) -> tuple[RecallActivations, RecallActivations, pd.DataFrame,
                                                                set[tuple[str, int]], list[int], list[int]]:
    """The stored capture pass and the facts the analyses use.

    Args:
        model: the model.
        run: the :class:`interp.results.Run` (the capture is its ``activations`` stage).
        p: resolved parameters (see :data:`DEFAULTS`).

    Returns:
        ``(zero, few, facts_table, known, rows_zero, rows_few)``: activations of the zero- and
        k-shot prompts, the per-fact table, the known facts, and the prompt rows analysed.
    """
    rels = load_relations(p["relations"], p["facts_file"])
    templates = _templates(p)

    def collect() -> dict[str, RecallActivations]:
        out = {}
        for label, shots in (("zero", 0), ("few", int(p["shots"]))):
            ps = build_prompts(model, rels, shots=shots, templates=templates, max_facts=p["max_facts"], path=p["facts_file"])
            out[label] = collect_activations(model, ps, batch_size=int(p["batch_size"]))
        return out

    acts = run.stage("activations", collect)
    zero, few = acts["zero"], acts["few"]
    known = _known(zero)
    ft = facts_table(model, zero, few)
    scope = known if p["analyse"] == "known" else {(f.relation, f.index) for f in zero.prompts.facts}
    if not scope:
        raise InterpError(f"{model.spec} knows none of the facts (no answer is the argmax); nothing to analyse "
                          "(--set analyse=all analyses every fact)")
    run.note(f"mechanism analyses use {'the known facts' if p['analyse'] == 'known' else 'all facts'} ({len(scope)})")
    kz = [i for i, f in enumerate(zero.prompts.facts) if (f.relation, f.index) in scope]
    kf = [i for i, f in enumerate(few.prompts.facts) if (f.relation, f.index) in scope]
    return zero, few, ft, known, kz, kf


def resolve_params(params: dict[str, Any], quick: bool) -> dict[str, Any]:
    """:data:`DEFAULTS` updated with ``params``, the quick/full sizes filled in where left None."""
    return _resolve(params, quick)


def script_setup(doc: str, name: str, with_corpus: bool = False) -> tuple[Model, Any, dict[str, Any], Any]:
    """The start every recall paper script in ``analyses/`` shares: parse ``--model --out --quick
    --relations`` (and ``--corpus``), load the model, resolve the parameters, open the run folder
    ``OUT/name``. Returns ``(model, run, params, args)``."""
    from interp.analyses import script_parser
    from interp.model import load_model
    from interp.results import Run

    ap = script_parser(doc, out="figures")
    ap.add_argument("--relations", default=None, help="comma-separated relation names (default: all)")
    if with_corpus:
        ap.add_argument("--corpus", default=None, help="text file/folder for token counts (default: model-based frequency)")
    args = ap.parse_args()
    model = load_model(args.model)
    p = resolve_params({"relations": args.relations}, args.quick)
    extra = {"corpus": args.corpus} if with_corpus else {}
    return model, Run(args.out, name, model=model, params=dict(p, quick=args.quick, **extra)), p, args


def run(model: Model, run: Any, quick: bool = False, **params: Any) -> dict[str, Any]:
    """Run every recall analysis, write its tables and figures, return the summary numbers."""
    with torch.no_grad():
        return _run(model, run, quick, **params)


def _run(model: Model, run: Any, quick: bool = False, **params: Any) -> dict[str, Any]:
    p = _resolve(params, quick)
    name = model.spec
    bs = int(p["batch_size"])
    last = model.n_layers - 1
    templates = _templates(p)
    run.note("position 0 is the first token of each prompt (or of the few-shot prefix); "
             + ("it is the BOS token" if model.prepend_bos else f"{model.spec} adds no BOS, so it is the first word, the attention sink"))

    zero, few, ft, known, kz, kf = prepare(model, run, p)
    run.table("facts_known", ft)

    # 1. logit lens
    def lens() -> pd.DataFrame:
        return pd.concat([logit_lens_table(model, zero, kz), logit_lens_table(model, few, kf)], ignore_index=True)

    lt = run.stage("logit_lens", lens)
    run.table("logit_lens", lt)
    drops = final_drop(lt)
    run.table("logit_lens_drop", drops)
    run.figure("logit_lens", logit_lens_figure(lt, name))

    # 2. argument heads
    scores = run.stage("argument_scores", lambda: pd.concat([argument_head_scores(model, zero, kz),
                                                             argument_head_scores(model, few, kf)], ignore_index=True))
    run.table("argument_heads", scores)
    sz = scores[scores["shots"] == 0]
    top = top_argument_heads(sz, int(p["top_k_heads"]), min_layer=int(p["min_arg_layer"]))
    top_names = [head_name(h) for h in top]
    run.figure("argument_heads", argument_heads_figure(sz, top_names, name))
    a0 = sz[sz["relation"] == "all"].set_index("name")["score"]
    a1 = scores[(scores["shots"] != 0) & (scores["relation"] == "all")].set_index("name")["score"].reindex(a0.index)
    zero_few_corr = float(np.corrcoef(a0.values, a1.values)[0, 1]) if a0.std() > 0 and a1.std() > 0 else float("nan")
    top_few = top_argument_heads(scores[scores["shots"] != 0], int(p["top_k_heads"]), min_layer=int(p["min_arg_layer"]))
    overlap = len(set(top) & set(top_few))

    abl, draws = run.stage("argument_ablation", lambda: argument_ablation(model, zero.subset(kz), top, int(p["n_random"]),
                                                                          run.seed, bs), key=top_names)
    run.table("argument_ablation", draws)
    run.figure("argument_ablation", argument_ablation_figure(draws, abl["base_prob"], name))

    # 3. MLP decomposition
    first = min(L for L, _ in top) if top else 0
    fits, coefs, decs = run.stage("mlp_decomposition", lambda: mlp_decomposition_tables(
        model, zero, top, layers=list(range(first, model.n_layers)), rows=kz), key=top_names)
    run.table("mlp_decomposition", fits)
    run.table("mlp_coefficients", coefs)
    run.figure("mlp_decomposition", mlp_decomposition_figure(fits, name))

    # 4. anti-overconfidence
    n_gen = p["generic_texts"]
    texts = generic_texts()[: n_gen] if n_gen else generic_texts()
    if p["frequency_corpus"]:
        corpus = read_texts(p["frequency_corpus"])
        log_freq = token_log_frequency(model, corpus, source="corpus")
        freq_source = f"corpus counts ({p['frequency_corpus']})"
    else:
        log_freq = run.stage("token_frequency", lambda: token_log_frequency(model, texts, source="model", batch_size=8))
        freq_source = f"model mean next-token distribution on {GENERIC_ID}"
    run.note(f"token frequency: {freq_source}")
    fl = list(range(model.n_layers - int(p["final_layers"]), model.n_layers))
    intercepts = {L: torch.stack([d.intercept for (r, l2), d in decs.items() if l2 == L]).mean(0)
                  for L in fl if any(l2 == L for (_, l2) in decs)}
    ao = anti_overconfidence_table(model, zero, log_freq, fl, intercepts, rows=kz)
    run.table("anti_overconfidence", ao)
    run.figure("anti_overconfidence", anti_overconfidence_figure(ao, freq_source, name))

    # 5. mitigation
    train = [zero.subset(zero.prompts.rows(split="train")), few.subset(few.prompts.rows(split="train"))]
    test = {"zero-shot": zero.subset(zero.prompts.rows(split="test")), f"{p['shots']}-shot": few.subset(few.prompts.rows(split="test"))}
    mode, scale = p["mitigation_mode"], float(p["mitigation_scale"])
    means = train[0].z[:, train[0].layer_index(last)].float().mean(0) if mode == "mean" else None
    chosen, trace = run.stage("suppressor_selection", lambda: select_suppressor_heads(
        model, train, p["max_suppressor_heads"], mode, scale, means, p["selection_metric"], batch_size=bs))
    chosen_names = [head_name(h) for h in chosen]
    run.table("suppressor_selection", trace)
    mt = run.stage("mitigation", lambda: mitigation_table(model, test, chosen, mode, scale, means, bs), key=chosen_names)
    run.table("mitigation", mt)

    def perplexity() -> tuple[float, float]:
        _, base, _ = next_token_stats(model, texts)
        if not chosen:
            return base, base
        m = {last: means} if mode == "mean" else None
        with ablate_heads(model, chosen, mode=mode, means=m, scale=scale):
            _, after, _ = next_token_stats(model, texts)
        return base, after

    ppl = run.stage("perplexity", perplexity, key=chosen_names)
    run.figure("mitigation", mitigation_figure(mt, chosen_names, ppl, name))

    zrow = mt[(mt["shots"] == "zero-shot") & (mt["relation"] == "all")].iloc[0]
    frow = mt[(mt["shots"] != "zero-shot") & (mt["relation"] == "all")].iloc[0]
    alld = drops[drops["relation"] == "all"].set_index("shots")
    fh = ao[(ao["kind"] == "head") & (ao["layer"] == last)]
    mlp_last = ao[(ao["kind"] == "mlp") & (ao["layer"] == last)]
    icpt = ao[(ao["kind"] == "mlp_intercept") & (ao["layer"] == last)]
    late = fits[fits["layer"] >= first]
    return {
        "n_facts": int(len(ft)),
        "n_facts_known": len(known),
        "n_facts_known_few_shot": int(ft["known_few_shot"].sum()),
        "known_by_relation": {r: int(g["known_zero_shot"].sum()) for r, g in ft.groupby("relation", sort=False)},
        "accuracy_base": float(zrow["accuracy_base"]),
        "accuracy_mitigated": float(zrow["accuracy_mitigated"]),
        "answer_prob_base": float(zrow["answer_prob_base"]),
        "answer_prob_mitigated": float(zrow["answer_prob_mitigated"]),
        "accuracy_base_few_shot": float(frow["accuracy_base"]),
        "accuracy_mitigated_few_shot": float(frow["accuracy_mitigated"]),
        "answer_prob_base_few_shot": float(frow["answer_prob_base"]),
        "answer_prob_mitigated_few_shot": float(frow["answer_prob_mitigated"]),
        "ppl_base": float(ppl[0]),
        "ppl_mitigated": float(ppl[1]),
        "suppressor_heads": chosen_names,
        "top_argument_heads": top_names,
        "top_argument_heads_few_shot": [head_name(h) for h in top_few],
        "argument_heads_zero_few_overlap": overlap,
        "argument_score_zero_few_corr": zero_few_corr,
        "argument_ablation_drop": float(abl["argument_ablation_drop"]),
        "random_ablation_drop": float(abl["random_ablation_drop"]),
        "random_ablation_drop_std": float(abl["random_drop_std"]),
        "base_answer_prob_known": float(abl["base_prob"]),
        "logit_lens_peak_layer": int(alld.loc[0, "peak_layer"]),
        "logit_lens_peak_prob": float(alld.loc[0, "peak_prob"]),
        "logit_lens_final_prob": float(alld.loc[0, "final_prob"]),
        "mlp_r2_mean": float(late["r2"].mean()),
        "mlp_alpha_argument_mean": float(late["alpha_argument_mean"].mean()),
        "mlp_alpha_other_mean": float(late["alpha_other_mean"].mean()),
        "mlp_intercept_answer_percentile_mean": float(late["answer_percentile"].mean()),
        "final_heads_attn_first_mean": float(fh["attn_first"].mean()),
        "final_heads_frac_attn_first_gt_half": float((fh["attn_first"] > 0.5).mean()),
        "final_heads_freq_corr_mean": float(fh["freq_corr"].mean()),
        "final_mlp_freq_corr": float(mlp_last["freq_corr"].iloc[0]),
        "final_mlp_intercept_freq_corr": float(icpt["freq_corr"].iloc[0]) if len(icpt) else float("nan"),
        "final_mlp_dla_answer": float(mlp_last["dla_answer"].iloc[0]),
        "frequency_source": freq_source,
        "n_templates": len(templates),
        "shots": int(p["shots"]),
    }
