"""``interp run recall``: factual-recall mechanisms (Lv et al. 2024, arXiv 2403.19521).

:func:`run` is the paper's steps in order; each step is one function here that calls the module
holding its equation and stores what it computes (stages resume after an interruption):

1. :func:`step_capture` (:mod:`~interp.recall.facts`, :mod:`~interp.recall.activations`): one capture
   pass per relation and shot form (zero-shot; k-shot with the demonstrations as a shared KV-cached
   prefix), last position only; the known facts (the answer's first token is the argmax in the
   canonical zero-shot template).
2. :func:`step_logit_lens` (:mod:`~interp.recall.logit_lens`): answer probability after every layer
   and after the final attention, on all and on known facts, per relation.
3. :func:`step_argument_heads` (:mod:`~interp.recall.argument_heads`): argument heads and their
   mean-ablation check against random heads.
4. :func:`step_mlp_decomposition` (:mod:`~interp.recall.mlp_decomposition`): activation and
   function application with an identifiable intercept, fold stability and task AUC.
5. :func:`step_token_frequency` (:mod:`interp.frequency`): token counts of a real corpus.
6. :func:`step_anti_overconfidence` (:mod:`~interp.recall.anti_overconfidence`): final-layer
   heads and MLP against token frequency.
7. :func:`step_mitigation` (:mod:`~interp.recall.mitigation`): heads / frequency / both chosen on
   train facts, measured on test facts, independent country facts and held-out text.
8. :func:`step_claims` (:mod:`~interp.recall.claims`): the paper's claims and verdicts.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch

from interp import distributed
from interp.errors import InterpError
from interp.model import Model
from interp.recall import figures as F
from interp.recall import sources
from interp.recall.ablation import Head, head_name
from interp.recall.activations import RecallActivations, collect_activations
from interp.recall.anti_overconfidence import anti_overconfidence_table
from interp.recall.argument_heads import argument_ablation, argument_head_scores, top_argument_heads
from interp.recall.attribution import final_norm_linear
from interp.recall.claims import claims_table
from interp.recall.facts import build_prompts, independent_relations, load_relations
from interp.recall.logit_lens import final_drop, logit_lens_table
from interp.recall.mitigation import (HEAD_SCALES, Mitigation, choose_mitigation, mitigation_tables, perplexity_cost, perplexity_from,
                                      text_nlls_many, text_tail)
from interp.recall.mlp_decomposition import MLPDecomposition, mlp_decomposition_tables, mlp_layer_summary
from interp.recall.params import PARAMS

DESCRIPTION = "factual recall (Lv et al. 2024): argument heads, MLP activation/function application, final-layer anti-overconfidence, mitigation"

# the parameters are declared (type, range, default, quick default, unit, meaning) in interp/recall/params.py
DEFAULTS: dict[str, Any] = PARAMS.defaults()

QUICK: dict[str, Any] = PARAMS.quick_values()
FULL = {"templates": list(range(10)), "max_facts": None, "n_random": 10, "lens_stride": 1, "head_scales": 3, "ppl_texts": 200, "selection_texts": 128,
        "independent_facts": None}


def resolve_params(params: dict[str, Any], quick: bool) -> dict[str, Any]:
    """:data:`DEFAULTS` updated with ``params``, the quick/full sizes filled in where left None."""
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
    if out["mitigation_method"] not in ("auto", "heads", "frequency", "both", "none"):
        raise InterpError(f"mitigation_method must be auto, heads, frequency, both or none, not {out['mitigation_method']!r}")
    return out


# ---------------------------------------------------------------- 1. capture


@dataclass
class RecallData:
    """Step 1's products: activations of the zero- and k-shot prompts, the per-fact table, the
    known facts and the prompt rows the mechanism analyses use."""

    zero: RecallActivations
    few: RecallActivations
    facts: pd.DataFrame
    known: set[tuple[str, int]]
    rows_zero: list[int]
    rows_few: list[int]


def prompt_templates(p: dict[str, Any]) -> list[int]:
    """The lead-ins a run uses: ``templates`` with the canonical 0 always among them."""
    return list(p["templates"]) if 0 in p["templates"] else [0] + list(p["templates"])


def known_facts(acts: RecallActivations) -> set[tuple[str, int]]:
    """Facts whose answer is the argmax in the canonical (template 0) prompt."""
    return {(f.relation, f.index) for f, t, c in zip(acts.prompts.facts, acts.prompts.templates, acts.correct.tolist()) if t == 0 and c}


def facts_table(model: Model, zero: RecallActivations, few: RecallActivations) -> pd.DataFrame:
    """One row per fact: split, whether the model knows it zero- and few-shot (canonical template)."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for label, acts in (("zero", zero), ("few", few)):
        for f, t, c, pr_id, pr in zip(acts.prompts.facts, acts.prompts.templates, acts.correct.tolist(), acts.pred.tolist(),
                                      acts.answer_prob.tolist()):
            if t != 0:
                continue
            r = rows.setdefault((f.relation, f.index), {"relation": f.relation, "subject": f.subject, "answer": f.answer,
                                                         "split": f.split})
            r[f"known_{label}_shot"] = bool(c)
            r[f"prediction_{label}_shot"] = model.tokenizer.decode([pr_id])
            r[f"answer_prob_{label}_shot"] = pr
    return pd.DataFrame(list(rows.values()))


def step_capture(model: Model, run: Any, p: dict[str, Any]) -> RecallData:
    """Step 1: the stored capture pass and the facts the analyses use."""
    rels = load_relations(p["relations"], p["facts_file"])
    templates = prompt_templates(p)

    def collect() -> dict[str, RecallActivations]:
        out = {}
        several = distributed.current().size > 1  # under torchrun: shared among the ranks, resumable per chunk
        for label, shots in (("zero", 0), ("few", int(p["shots"]))):
            ps = build_prompts(model, rels, shots=shots, templates=templates, max_facts=p["max_facts"], path=p["facts_file"])
            got = collect_activations(model, ps, batch_size=int(p["batch_size"]),
                                      shard_dir=run.dir / "shards" / f"activations-{label}" if several else None)
            assert got is not None  # rank 0 runs the pipeline
            out[label] = got
        if several:
            shutil.rmtree(run.dir / "shards", ignore_errors=True)  # gathered: the per-chunk files are spent
        return out

    acts = run.stage("activations", collect, key="final-mlp-v2")
    zero, few = acts["zero"], acts["few"]
    known = known_facts(zero)
    ft = facts_table(model, zero, few)
    scope = known if p["analyse"] == "known" else {(f.relation, f.index) for f in zero.prompts.facts}
    if not scope:
        raise InterpError(f"{model.spec} knows none of the facts (no answer is the argmax); nothing to analyse "
                          "(--set analyse=all analyses every fact)")
    run.note(f"mechanism analyses use {'the known facts' if p['analyse'] == 'known' else 'all facts'} ({len(scope)})")
    kz = [i for i, f in enumerate(zero.prompts.facts) if (f.relation, f.index) in scope]
    kf = [i for i, f in enumerate(few.prompts.facts) if (f.relation, f.index) in scope]
    run.table("facts_known", ft)
    return RecallData(zero, few, ft, known, kz, kf)


# ---------------------------------------------------------------- 2. logit lens


def step_logit_lens(model: Model, run: Any, p: dict[str, Any], d: RecallData) -> dict[str, Any]:
    """Step 2: where the answer appears and what the final attention and final MLP do to it."""
    def lens() -> pd.DataFrame:
        parts = []
        last = model.n_layers - 1
        stride = max(1, int(p["lens_stride"]))
        shown = sorted({L for L in d.zero.layers[::stride]} | {L for L in d.zero.layers if L >= last - 2})
        for acts, rows in ((d.zero, d.rows_zero), (d.few, d.rows_few)):
            parts.append(logit_lens_table(model, acts.subset(rows).only_layers(shown)).assign(facts="analysed"))
            # the final layer's split on all facts and on known facts (canonical template)
            canon = [i for i, t in enumerate(acts.prompts.templates) if t == 0]
            tail = acts.subset(canon).only_layers([L for L in acts.layers if L >= last - 1])
            known = [k for k, i in enumerate(canon) if (acts.prompts.facts[i].relation, acts.prompts.facts[i].index) in d.known]
            parts.append(logit_lens_table(model, tail, subsets={"all": range(len(canon)), "known": known}))
        return pd.concat(parts, ignore_index=True)

    lt = run.stage("logit_lens", lens, key="split-v3")
    run.table("logit_lens", lt)
    drops = final_drop(lt)
    run.table("logit_lens_drop", drops)
    run.figure("logit_lens", F.logit_lens_figure(lt[lt["facts"] == "analysed"], model.spec))
    g = lt[(lt["facts"] == "analysed") & (lt["relation"] == "all") & (lt["shots"] == 0)].sort_values("layer")
    r = drops[(drops["facts"] == "analysed") & (drops["relation"] == "all") & (drops["shots"] == 0)].iloc[0]
    start = model.n_layers - 1 - int(p["final_layers"])
    late = g[g["layer"] >= start]
    before = g[g["layer"] <= start]
    return {"logit_lens_peak_layer": float(r["peak_layer"]), "logit_lens_peak_prob": float(r["peak_prob"]),
            "logit_lens_final_prob": float(r["final_prob"]),
            "logit_lens_after_final_attention_prob": float(r.get("prob_after_final_attention", float("nan"))),
            "final_attention_change": float(r.get("final_attention_change", float("nan"))),
            "final_mlp_change": float(r.get("final_mlp_change", float("nan"))),
            "late_peak_prob": float(late["answer_prob"].max()) if len(late) else float("nan"),
            "prob_before_last_layers": float(before["answer_prob"].iloc[-1]) if len(before) else float("nan")}


# ---------------------------------------------------------------- 3. argument heads


def step_argument_heads(model: Model, run: Any, p: dict[str, Any], d: RecallData) -> tuple[list[Head], dict[str, Any]]:
    """Step 3: argument-head scores (zero- and few-shot), the top heads and their ablation check."""
    scores = run.stage("argument_scores", lambda: pd.concat([argument_head_scores(model, d.zero, d.rows_zero),
                                                             argument_head_scores(model, d.few, d.rows_few)], ignore_index=True))
    run.table("argument_heads", scores)
    k, min_layer = int(p["top_k_heads"]), int(p["min_arg_layer"])
    sz = scores[scores["shots"] == 0]
    top = top_argument_heads(sz, k, min_layer=min_layer)
    top_few = top_argument_heads(scores[scores["shots"] != 0], k, min_layer=min_layer)
    names = [head_name(h) for h in top]
    run.figure("argument_heads", F.argument_heads_figure(sz, names, model.spec))
    a0 = sz[sz["relation"] == "all"].set_index("name")["score"]
    a1 = scores[(scores["shots"] != 0) & (scores["relation"] == "all")].set_index("name")["score"].reindex(a0.index)
    corr = float(np.corrcoef(a0.values, a1.values)[0, 1]) if a0.std() > 0 and a1.std() > 0 else float("nan")
    abl, draws = run.stage("argument_ablation", lambda: argument_ablation(model, d.zero.subset(d.rows_zero), top, int(p["n_random"]),
                                                                          run.seed, int(p["batch_size"])), key=names)
    run.table("argument_ablation", draws)
    run.figure("argument_ablation", F.argument_ablation_figure(draws, abl["base_prob"], model.spec))
    return top, {"top_argument_heads": names, "top_argument_heads_few_shot": [head_name(h) for h in top_few],
                 "argument_heads_zero_few_overlap": len(set(top) & set(top_few)), "argument_score_zero_few_corr": corr,
                 "argument_ablation_drop": float(abl["argument_ablation_drop"]),
                 "random_ablation_drop": float(abl["random_ablation_drop"]),
                 "random_ablation_drop_std": float(abl["random_drop_std"]), "base_answer_prob_known": float(abl["base_prob"])}


# ---------------------------------------------------------------- 4. MLP decomposition


def step_mlp_decomposition(model: Model, run: Any, p: dict[str, Any], d: RecallData, top: list[Head]
                           ) -> tuple[dict[tuple[str, int], MLPDecomposition], dict[str, Any]]:
    """Step 4: activation and function application per relation and layer, from the argument heads' layer on."""
    first = min(L for L, _ in top) if top else 0
    layers = sorted(set(range(first, model.n_layers)) | {model.n_layers - 1})
    fits, coefs, decs = run.stage("mlp_decomposition", lambda: mlp_decomposition_tables(
        model, d.zero, top, layers=layers, rows=d.rows_zero), key=[head_name(h) for h in top] + ["centred-v2"])
    s_mean = float(final_norm_linear(model).scale(d.zero.subset(d.rows_zero).final_resid).mean())
    per_layer = mlp_layer_summary(model, fits, decs, s_mean)
    run.table("mlp_decomposition", fits)
    run.table("mlp_decomposition_layers", per_layer)
    run.table("mlp_coefficients", coefs)
    run.figure("mlp_decomposition", F.mlp_decomposition_figure(fits, model.spec))
    best = per_layer.loc[per_layer["task_auc"].idxmax()] if per_layer["task_auc"].notna().any() else None
    nan = float("nan")
    return decs, {"mlp_r2_mean": float(fits["r2"].mean()), "mlp_r2_cv_mean": float(fits["r2_cv"].mean()),
                  "mlp_alpha_argument_mean": float(fits["alpha_argument_mean"].mean()),
                  "mlp_alpha_other_mean": float(fits["alpha_other_mean"].mean()),
                  "mlp_intercept_answer_percentile_mean": float(fits["answer_percentile"].mean()),
                  "mlp_intercept_fold_cosine_mean": float(fits["intercept_fold_cosine"].mean()),
                  "mlp_uncentred_intercept_fold_cosine_mean": float(fits["uncentred_intercept_fold_cosine"].mean()),
                  "mlp_intercept_fold_spread_mean": float(fits["intercept_fold_spread"].mean()),
                  "mlp_uncentred_intercept_fold_spread_mean": float(fits["uncentred_intercept_fold_spread"].mean()),
                  "mlp_task_auc_mean": float(per_layer["task_auc"].mean()),
                  "mlp_best_auc_layer": int(best["layer"]) if best is not None else None,
                  "mlp_best_task_auc": float(best["task_auc"]) if best is not None else nan,
                  "mlp_max_task_auc": float(per_layer["task_auc"].max()),
                  "mlp_intercept_answer_percentile_best": float(best["answer_percentile"]) if best is not None else nan}


# ---------------------------------------------------------------- 5-6. frequency and anti-overconfidence


def step_token_frequency(model: Model, run: Any, p: dict[str, Any]) -> Any:
    """Step 5: token counts of a real corpus (or the model's own mean prediction, when asked)."""
    freq = sources.token_frequency(model, str(p["frequency_source"]))
    run.note(f"token frequency: {freq.source} ({int(torch.as_tensor(freq.occurs).sum())} of {model.d_vocab} tokens occur)")
    return freq


def step_anti_overconfidence(model: Model, run: Any, p: dict[str, Any], d: RecallData, freq: Any,
                             decs: dict[tuple[str, int], MLPDecomposition]) -> dict[str, Any]:
    """Step 6: final-layer heads (all, and those attending to the first position) and the final MLP with its intercepts."""
    last = model.n_layers - 1
    fl = list(range(model.n_layers - int(p["final_layers"]), model.n_layers))
    intercepts = {(r, L): dec.intercept for (r, L), dec in decs.items() if L in fl}
    ao = anti_overconfidence_table(model, d.zero, freq, fl, intercepts, rows=d.rows_zero)
    run.table("anti_overconfidence", ao)
    run.figure("anti_overconfidence", F.anti_overconfidence_figure(ao, freq.source, model.spec))
    at = ao[ao["layer"] == last]
    fh = at[at["kind"] == "head"]
    fp = at[at["kind"] == "first_position_heads"]
    mlp = at[at["kind"] == "mlp"]
    icpt = at[(at["kind"] == "mlp_intercept") & (at["relation"] == "all")]
    nan = float("nan")
    return {"final_heads_attn_first_mean": float(fh["attn_first"].mean()),
            "final_heads_frac_attn_first_gt_half": float(fh["first_position"].astype(bool).mean()),
            "final_heads_freq_corr_mean": float(fh["freq_spearman"].mean()),
            "final_heads_freq_pearson_mean": float(fh["freq_pearson"].mean()),
            "first_position_heads": fp["name"].iloc[0] if len(fp) else "",
            "first_position_heads_freq_spearman": float(fp["freq_spearman"].iloc[0]) if len(fp) else nan,
            "first_position_heads_freq_pearson": float(fp["freq_pearson"].iloc[0]) if len(fp) else nan,
            "final_mlp_freq_corr": float(mlp["freq_spearman"].iloc[0]),
            "final_mlp_freq_spearman": float(mlp["freq_spearman"].iloc[0]),
            "final_mlp_freq_pearson": float(mlp["freq_pearson"].iloc[0]),
            "final_mlp_intercept_freq_corr": float(icpt["freq_spearman"].iloc[0]) if len(icpt) else nan,
            "final_mlp_intercept_freq_spearman": float(icpt["freq_spearman"].iloc[0]) if len(icpt) else nan,
            "final_mlp_intercept_freq_pearson": float(icpt["freq_pearson"].iloc[0]) if len(icpt) else nan,
            "final_mlp_dla_answer": float(mlp["dla_answer"].iloc[0]),
            "frequency_source": freq.source}


# ---------------------------------------------------------------- 7. mitigation


def independent_activations(model: Model, p: dict[str, Any]) -> dict[str, RecallActivations]:
    """Zero- and k-shot prompts of the independent country facts, last layer captured."""
    rels = independent_relations(load_relations(p["relations"], p["facts_file"]), sources.independent_facts(),
                                 p["independent_facts"])
    if not rels:
        return {}
    out = {}
    for label, shots in (("zero-shot", 0), (f"{p['shots']}-shot", int(p["shots"]))):
        ps = build_prompts(model, rels, shots=shots, templates=[0], path=p["facts_file"])
        out[label] = collect_activations(model, ps, layers=[model.n_layers - 1], batch_size=int(p["batch_size"]))
    return out


def step_mitigation(model: Model, run: Any, p: dict[str, Any], d: RecallData, freq: Any) -> dict[str, Any]:
    """Step 7: choose heads / frequency / both on train facts; measure every candidate on test facts,
    independent facts (zero- and few-shot) and held-out text."""
    bs = int(p["batch_size"])
    last = model.n_layers - 1
    zero, few = d.zero, d.few
    train = [zero.subset(zero.prompts.rows(split="train")), few.subset(few.prompts.rows(split="train"))]
    sets = {("test", "zero-shot"): zero.subset(zero.prompts.rows(split="test")),
            ("test", f"{p['shots']}-shot"): few.subset(few.prompts.rows(split="test"))}
    indep = run.stage("independent_facts", lambda: independent_activations(model, p))
    sets.update({("independent", k): v for k, v in indep.items()})
    sel_texts, _ = sources.texts(p["text_corpus"], "train")
    sel_texts = sel_texts[: int(p["selection_texts"])]
    mode, scale = p["mitigation_mode"], float(p["mitigation_scale"])
    means = train[0].z[:, train[0].layer_index(last)].float().mean(0) if mode == "mean" else None
    chosen, cands, trace = run.stage("mitigation_selection", lambda: choose_mitigation(
        model, train, freq, sel_texts, p["mitigation_method"], mode, scale, means, p["max_suppressor_heads"],
        p["selection_metric"], head_scales=HEAD_SCALES[: int(p["head_scales"])], ppl_z=float(p["ppl_bound_z"]),
        batch_size=bs), key="both-per-head-setting-v2")
    run.table("mitigation_selection", trace)
    run.note(f"mitigation chosen on train facts: {chosen.describe()}")
    texts, text_id = sources.texts(p["text_corpus"], "heldout")
    texts = texts[: int(p["ppl_texts"])]

    def measure() -> tuple[pd.DataFrame, dict[str, float], dict[str, float]]:
        tail = text_tail(model, texts, last)  # every candidate acts in the last block only: re-run just that
        names = [n for n in cands if n != "none"]
        got = dict(zip(["none"] + names, text_nlls_many(model, texts, [Mitigation()] + [cands[n] for n in names], tail=tail)))
        ppl = {n: perplexity_from(a, c) for n, (a, c) in got.items()}
        upper = {n: perplexity_cost(got["none"][0], a, c, float(p["ppl_bound_z"]))[1] for n, (a, c) in got.items()}
        # heads and both share a head setting: one pass per prompt set for the two
        return mitigation_tables(model, sets, [cands[n] for n in names] or [Mitigation()], bs), ppl, upper

    mt, ppl, upper = run.stage("mitigation", measure, key=["per-text-v2", chosen.describe()] + [m.describe() for m in cands.values()])
    mt["chosen"] = mt["method"] == chosen.method
    mt["ppl_base"] = ppl["none"]
    mt["ppl_mitigated"] = mt["method"].map(lambda m: ppl.get(m, ppl["none"]))
    mt["ppl_cost_upper"] = mt["method"].map(lambda m: upper.get(m, 0.0))
    run.table("mitigation", mt)
    run.figure("mitigation", F.mitigation_figure(mt, chosen.describe(), text_id, model.spec))
    return mitigation_summary(mt, chosen, ppl, p, text_id, upper)


def mitigation_summary(mt: pd.DataFrame, chosen: Mitigation, ppl: dict[str, float], p: dict[str, Any], text_id: str,
                       upper: Optional[dict[str, float]] = None) -> dict[str, Any]:
    """The summary numbers of the chosen method (rows of ``mt`` with relation ``all``); ``upper``: per
    method, the one-sided upper bound of the held-out perplexity cost (:func:`perplexity_cost`)."""
    upper = upper or {}
    g = mt[(mt["relation"] == "all") & (mt["method"] == (chosen.method if chosen.method != "none" else mt["method"].iloc[0]))]
    nan = float("nan")

    def val(facts: str, few: bool, col: str) -> float:
        r = g[(g["facts"] == facts) & ((g["shots"] != "zero-shot") if few else (g["shots"] == "zero-shot"))]
        if not len(r):
            return nan
        if chosen.method == "none" and col.endswith("_mitigated"):
            col = col.replace("_mitigated", "_base")
        return float(r[col].iloc[0])

    out: dict[str, Any] = {"mitigation_method": chosen.method, "mitigation": chosen.describe(),
                           "suppressor_heads": [head_name(h) for h in chosen.heads],
                           "frequency_projection_gamma": chosen.gamma}
    for facts, suffix in (("test", ""), ("independent", "_independent")):
        for few, s2 in ((False, ""), (True, "_few_shot")):
            for col in ("accuracy_base", "accuracy_mitigated", "answer_prob_base", "answer_prob_mitigated"):
                out[f"{col}{suffix}{s2}"] = val(facts, few, col)
    out["ppl_base"] = ppl["none"]
    out["ppl_mitigated"] = ppl.get(chosen.method, ppl["none"])
    out["text_corpus"] = text_id

    def gain(facts: str, kind: str) -> float:
        xs = [val(facts, few, f"{kind}_mitigated") - val(facts, few, f"{kind}_base") for few in (False, True)]
        xs = [x for x in xs if x == x]
        return float(np.mean(xs)) if xs else nan

    by_method = {}
    for m, gm in mt[mt["relation"] == "all"].groupby("method", sort=False):
        d = (gm["answer_prob_mitigated"] - gm["answer_prob_base"]).groupby(gm["facts"]).mean()
        a = (gm["accuracy_mitigated"] - gm["accuracy_base"]).groupby(gm["facts"]).mean()
        by_method[m] = {"answer_prob_gain_test": float(d.get("test", nan)), "answer_prob_gain_independent": float(d.get("independent", nan)),
                        "accuracy_change_test": float(a.get("test", nan)), "accuracy_change_independent": float(a.get("independent", nan)),
                        "ppl_cost": ppl.get(m, ppl["none"]) / ppl["none"] - 1.0, "ppl_cost_upper": upper.get(m, nan)}
    out["mitigation_candidates"] = by_method
    out.update({"mitigation_gain_test": gain("test", "answer_prob"), "mitigation_gain_independent": gain("independent", "answer_prob"),
                "mitigation_acc_change_test": gain("test", "accuracy"),
                "mitigation_acc_change_independent": gain("independent", "accuracy"),
                "mitigation_ppl_cost": out["ppl_mitigated"] / out["ppl_base"] - 1.0,
                "mitigation_ppl_cost_upper": upper.get(chosen.method, 0.0 if chosen.method == "none" else nan)})
    return out


# ---------------------------------------------------------------- 8. claims


def step_claims(run: Any, values: dict[str, Any]) -> pd.DataFrame:
    """Step 8: the paper's claims, measured value and verdict (``tables/claims.csv``)."""
    table = claims_table(values)
    run.table("claims", table)
    return table


# ---------------------------------------------------------------- the run


def script_setup(doc: str, name: str, with_corpus: bool = False) -> tuple[Model, Any, dict[str, Any], Any]:
    """The start every recall paper script in ``analyses/`` shares: parse ``--model --out --quick
    --relations`` (and ``--frequency-source``), load the model, resolve the parameters, open the run
    folder ``OUT/name``. Returns ``(model, run, params, args)``."""
    from interp.analyses import script_parser
    from interp.model import load_model
    from interp.results import Run

    ap = script_parser(doc, out="figures")
    ap.add_argument("--relations", default=None, help="comma-separated relation names (default: all)")
    if with_corpus:
        ap.add_argument("--frequency-source", default="wikipedia",
                        help="token counts: wikipedia (default), wordfreq, model, or a text file")
    args = ap.parse_args()
    model = load_model(args.model)
    extra = {"frequency_source": args.frequency_source} if with_corpus else {}
    p = resolve_params({"relations": args.relations, **extra}, args.quick)
    return model, Run(args.out, name, model=model, params=dict(p, quick=args.quick)), p, args


def run(model: Model, run: Any, quick: bool = False, **params: Any) -> dict[str, Any]:
    """Run every recall analysis in the paper's order, write its tables and figures, return the summary."""
    p = resolve_params(params, quick)
    run.note("recall prompts are sentence completions (plain text; no chat template, instruct model or not)")
    run.note("position 0 is the first token of each prompt (or of the few-shot prefix); "
             + ("it is the BOS token" if model.prepend_bos else f"{model.spec} adds no BOS, so it is the first word, the attention sink"))
    with torch.no_grad():
        d = step_capture(model, run, p)
        summary: dict[str, Any] = {
            "n_facts": int(len(d.facts)), "n_facts_known": len(d.known),
            "n_facts_known_few_shot": int(d.facts["known_few_shot"].sum()),
            "known_by_relation": {r: int(g["known_zero_shot"].sum()) for r, g in d.facts.groupby("relation", sort=False)}}
        summary.update(step_logit_lens(model, run, p, d))
        top, s = step_argument_heads(model, run, p, d)
        summary.update(s)
        decs, s = step_mlp_decomposition(model, run, p, d, top)
        summary.update(s)
        freq = step_token_frequency(model, run, p)
        summary.update(step_anti_overconfidence(model, run, p, d, freq, decs))
        summary.update(step_mitigation(model, run, p, d, freq))
    step_claims(run, summary)
    summary.update({"n_templates": len(prompt_templates(p)), "shots": int(p["shots"])})
    return summary
