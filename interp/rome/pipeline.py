"""``interp run rome``: ROME edits, their collapse, and the consistent-key fix (Yang et al. 2024).

Stages: generated prefixes -> key second moment C at the edited layer (cached on disk) and the
convergence of C^-1 -> keys k^u and k̄ of every request -> reference texts and their unedited
perplexity -> per request: v*, the three updates, evaluation and perplexity under each ->
first-token analysis -> tables, figures, summary.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import pandas as pd
import torch

from interp.errors import InterpError
from interp.model import Model, portable_path
from interp.rome.params import PARAMS
from interp.rome import figures
from interp.rome.collapse import (
    ReferenceTexts, collapse_threshold_report, is_collapse, perplexity, reference_texts, token_nll,
)
from interp.rome.compute_u import RequestKeys, compute_keys, generate_prefixes, key_hook
from interp.rome.compute_v import compute_v
from interp.rome.evaluate import edit_scores, eval_prompts, next_token_logprobs
from interp.rome.first_token import first_token_split, layer_anomaly_table, projection_2d, whitened_norms
from interp.rome.layer_stats import inverse_convergence, inverse_covariance, layer_stats
from interp.rome.requests import REQUESTS_ID, EditRequest, load_requests, subject_position_class
from interp.rome.rome_main import VARIANTS, applied_edit, rome_update

DESCRIPTION = "ROME editing and its collapse (Yang et al. 2024): mixed vs consistent keys, first-token keys"

# the parameters are declared (type, range, default, quick default, unit, meaning) in interp/rome/params.py
DEFAULTS: dict[str, Any] = PARAMS.defaults()

QUICK: dict[str, Any] = PARAMS.quick_values()


def default_layer(model: Model) -> int:
    """The MLP layer ROME edits by default: 20% of the depth (layer 6 of SmolLM2's 30).

    ROME edits an early-middle MLP, where causal tracing finds the subject's last token's MLP
    effect on factual recall largest: layer 17 of 48 in GPT-2-XL (35%), 5 of 28 in GPT-J (18%).
    For SmolLM2-135M-Instruct (30 layers) 20% gives layer 6, inside the early band in which its
    MLPs at the subject's last token carry the subject's attributes; every run can set ``layer``.
    """
    return max(0, min(model.n_layers - 1, round(0.2 * model.n_layers)))


def select_requests(requests: list[EditRequest], model: Model, n: int) -> list[EditRequest]:
    """``n`` requests (all when ``n <= 0``), half with the subject's last token as the prompt's first
    token and half others, evenly spaced through the file so every relation is drawn."""
    if n <= 0 or n >= len(requests):
        return list(requests)
    off = 1 if model.prepend_bos else 0
    first = [r for r in requests if len(model.encode(r.prompt[: r.prompt.index("{}")] + r.subject)) - 1 == off]
    rest = [r for r in requests if r not in first]
    n_first = min(len(first), n // 2)
    n_rest = min(len(rest), n - n_first)

    def spread(xs: list, k: int) -> list:
        return [xs[int(i * len(xs) / k)] for i in range(k)] if k else []

    chosen = spread(first, n_first) + spread(rest, n_rest)
    return sorted(chosen, key=lambda r: r.case_id)


def _prefixed(model: Model, ref: ReferenceTexts, prefixes: list[str], seed: int) -> tuple[list[list[int]], list[int], list[list[int]], list[int]]:
    """Reference texts behind a seeded random prefix each, and where their scored part starts."""
    rng = random.Random(seed)
    strip = 1 if model.prepend_bos else 0
    gen_t, gen_s, own_t, own_s = [], [], [], []
    for ids in ref.generic:
        p = model.encode(rng.choice(prefixes))
        gen_t.append(p + ids[strip:])
        gen_s.append(len(p) + 1)
    for ids, pl in zip(ref.generations, ref.generation_prompt_lengths):
        p = model.encode(rng.choice(prefixes))
        own_t.append(p + ids[strip:])
        own_s.append(len(p) + pl - strip)
    return gen_t, gen_s, own_t, own_s


def _reference_stage(model: Model, p: dict, prefixes: list[str]) -> dict:
    ref = reference_texts(model, p["ppl_generic"], p["ppl_max_tokens"], p["ppl_generations"], 6, p["ppl_gen_tokens"])
    pref = _prefixed(model, ref, prefixes, p["eval_seed"])
    return {
        "ref": ref,
        "prefixed": pref,
        "base": {
            "generic": perplexity(token_nll(model, ref.generic)),
            "own": perplexity(token_nll(model, ref.generations, ref.generation_prompt_lengths)),
            "generic_prefixed": perplexity(token_nll(model, pref[0], pref[1])),
            "own_prefixed": perplexity(token_nll(model, pref[2], pref[3])),
        },
    }


def _edit_stage(model: Model, p: dict, layer: int, req: EditRequest, i: int, keys: RequestKeys, c_inv: torch.Tensor,
                prefixes: list[str], ref: dict) -> list[dict]:
    vs = compute_v(
        model, req, layer, [""] + prefixes[: p["v_contexts"]], steps=p["v_steps"], lr=p["v_lr"], kl_factor=p["kl_factor"],
        weight_decay=p["v_weight_decay"], clamp_norm_factor=p["clamp_norm_factor"], early_stop_loss=p["early_stop_loss"],
    )
    bare = eval_prompts(model, req)
    pref = eval_prompts(model, req, prefixes, seed=p["eval_seed"])
    before_bare = next_token_logprobs(model, bare.texts)
    before_pref = next_token_logprobs(model, pref.texts)
    r_texts, base = ref["ref"], ref["base"]
    g_t, g_s, o_t, o_s = ref["prefixed"]
    off = 1 if model.prepend_bos else 0
    rows = []
    dens = {}
    for variant in VARIANTS:
        up = rome_update(c_inv, keys.k_u[i], keys.k_bar[i], vs.delta, keys.w_k_u[i], keys.w_k_bar[i], variant)
        dens[variant] = up.denominator
        prompts, before = (pref, before_pref) if variant == "consistent_prefix" else (bare, before_bare)
        with applied_edit(model, layer, up):
            after = next_token_logprobs(model, prompts.texts)
            if variant == "consistent_prefix":
                ppl_g, ppl_o = perplexity(token_nll(model, g_t, g_s)), perplexity(token_nll(model, o_t, o_s))
                bg, bo = base["generic_prefixed"], base["own_prefixed"]
            else:
                ppl_g = perplexity(token_nll(model, r_texts.generic))
                ppl_o = perplexity(token_nll(model, r_texts.generations, r_texts.generation_prompt_lengths))
                bg, bo = base["generic"], base["own"]
        rows.append({
            "case_id": req.case_id, "relation": req.relation, "subject": req.subject, "prompt": req.text,
            "target_true": req.target_true, "target_new": req.target_new,
            "subject_position": keys.positions[i],
            "position_class": subject_position_class(keys.positions[i], req.prompt, off),
            "variant": variant,
            "numerator_norm": float(up.numerator.norm()),
            "denominator": up.denominator,
            "denominator_normalized": up.denominator / float(up.u.norm()),
            "delta_w_norm": up.norm,
            "k_u_norm": float(keys.k_u[i].norm()), "k_bar_norm": float(keys.k_bar[i].norm()),
            "k_u_k_bar_cosine": float(torch.nn.functional.cosine_similarity(keys.k_u[i], keys.k_bar[i], dim=0)),
            "v0_norm": float(vs.v0.norm()), "v_steps": vs.steps, "v_final_loss": vs.losses[-1], "v_final_nll": vs.nll[-1],
            "ppl_generic_before": bg, "ppl_generic_after": ppl_g, "ppl_own_before": bo, "ppl_own_after": ppl_o,
            "ppl_ratio": max(ppl_g / bg, ppl_o / bo),
            **edit_scores(prompts, before, after),
        })
    for r in rows:
        r["denominator_mixed"] = dens["rome"]
        r["denominator_consistent"] = dens["consistent"]
    return rows


def _first_token_stage(model: Model, p: dict, layer: int, keys: RequestKeys, requests: list[EditRequest], c_inv: torch.Tensor) -> dict:
    from interp import corpus as corpus_mod

    texts = [t[: p["ppl_max_tokens"]] for t in model.encode(corpus_mod.generic_texts()[-p["first_token_texts"]:])]
    step = max(1, int(p["first_token_layer_step"]))
    layers = sorted(set(range(0, model.n_layers, step)) | {layer})
    table = layer_anomaly_table(model, texts, layers)
    off = 1 if model.prepend_bos else 0
    split = first_token_split(model, texts, [key_hook(layer)], first_position=off)[key_hook(layer)]
    first_req = torch.tensor([pos == off for pos in keys.positions])
    fit, (f_first, f_ku, f_kbar), ev = projection_2d(
        torch.cat([split.later, split.first]), split.first, keys.k_u, keys.k_bar
    )
    n_later = len(split.later)
    pts = [dict(group="later token (texts)", pc1=x, pc2=y, label="") for x, y in fit[:n_later]]
    pts += [dict(group="first token (texts)", pc1=x, pc2=y, label=model.tokenizer.decode([t[off]])) for (x, y), t in zip(f_first, texts)]
    for j, r in enumerate(requests):
        g = "kᵘ, subject = first token" if bool(first_req[j]) else "kᵘ, subject later"
        pts.append(dict(group=g, pc1=f_ku[j, 0], pc2=f_ku[j, 1], label=r.subject))
        pts.append(dict(group="k̄ (prefixed)", pc1=f_kbar[j, 0], pc2=f_kbar[j, 1], label=r.subject))
    wn = {
        "whitened_norm_first_texts": float(whitened_norms(split.first, c_inv).mean()),
        "whitened_norm_later_texts": float(whitened_norms(split.later, c_inv).mean()),
        "whitened_norm_k_u_first": float(whitened_norms(keys.k_u[first_req], c_inv).mean()) if first_req.any() else float("nan"),
        "whitened_norm_k_u_later": float(whitened_norms(keys.k_u[~first_req], c_inv).mean()) if (~first_req).any() else float("nan"),
        "whitened_norm_k_bar": float(whitened_norms(keys.k_bar, c_inv).mean()),
    }
    return {"table": table, "points": pts, "explained": [float(x) for x in ev], "whitened": wn}


def _median_abs(x: pd.Series) -> float:
    return float(x.abs().median()) if len(x) else float("nan")


def _mean(x: pd.Series) -> float:
    return float(x.mean()) if len(x) else float("nan")


def resolve_params(params: dict[str, Any], quick: bool) -> dict[str, Any]:
    """:data:`DEFAULTS` updated with ``params``; with ``quick``, :data:`QUICK` sizes for every
    parameter the caller did not set (a value set explicitly is kept even when it equals the default)."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise InterpError(f"rome has no parameter(s) {sorted(unknown)}")
    p = {**DEFAULTS, **params}
    if quick:
        p.update({k: v for k, v in QUICK.items() if k not in params})
    return p


def run(model: Model, run: Any, quick: bool = False, **params: Any) -> dict:
    """Run the ROME collapse analysis; write tables, figures and the summary through ``run``.

    Args:
        model: the model handle.
        run: the :class:`interp.results.Run`.
        quick: smaller sizes (see ``QUICK``) for every parameter not given in ``params``.
        **params: overrides of ``DEFAULTS``.

    Returns:
        The summary numbers.
    """
    p = resolve_params(params, quick)
    layer = default_layer(model) if p["layer"] is None else int(p["layer"])
    if not 0 <= layer < model.n_layers:
        raise InterpError(f"layer {layer} out of range for {model.n_layers} layers")
    if p["collapse_ratio"] <= 1:
        raise InterpError("collapse_ratio must exceed 1")
    name = model.spec

    requests = select_requests(load_requests(p["requests_file"]), model, int(p["n_requests"]))
    prefixes = run.stage("prefixes", lambda: generate_prefixes(model, p["prefix_lengths"], seed=p["prefix_seed"]))
    if p["v_contexts"] > len(prefixes):
        raise InterpError(f"v_contexts={p['v_contexts']} exceeds the {len(prefixes)} generated prefixes")
    run.table("prefixes", pd.DataFrame({"prefix": prefixes, "n_tokens": [len(model.encode(x)) for x in prefixes]}))

    with run.timed("covariance"):
        stat = layer_stats(model, layer, p["cov_corpus"], p["cov_samples"], p["cov_max_tokens"], seed=p["prefix_seed"],
                           use_cache=bool(p["cov_cache"]))
    run.note(f"key second moment: {stat.n_tokens} tokens from {stat.n_samples} texts of {stat.description} "
             f"(corpus id {stat.key['corpus']}; {'read from' if stat.cached else 'written to'} {portable_path(str(stat.path))})")
    c_inv = inverse_covariance(stat.mom2, float(p["cov_ridge"])).float()
    keys = run.stage("keys", lambda: compute_keys(model, requests, layer, prefixes, include_bare=bool(p["kbar_include_bare"])))
    conv = pd.DataFrame(inverse_convergence(stat, keys.k_bar, float(p["cov_ridge"])))
    run.table("covariance_convergence", conv)

    ref = run.stage("reference", lambda: _reference_stage(model, p, prefixes))
    rows: list[dict] = []
    from tqdm.auto import tqdm

    for i, req in enumerate(tqdm(requests, desc="ROME edits", unit="edit",
                                       disable=os.environ.get("INTERP_PROGRESS", "1") == "0")):
        rows += run.stage(f"edit_{req.case_id}", lambda: _edit_stage(model, p, layer, req, i, keys, c_inv, prefixes, ref),
                          key=[layer, req.case_id])
    edits = pd.DataFrame(rows)
    thr = float(p["collapse_ratio"])
    edits["collapse"] = [is_collapse(r, thr) for r in edits.ppl_ratio]
    run.table("edits", edits)
    report = collapse_threshold_report(edits.ppl_ratio.tolist(), thr)
    run.table("collapse_threshold", pd.DataFrame([report]))

    ft = run.stage("first_token", lambda: _first_token_stage(model, p, layer, keys, requests, c_inv))
    ft_table = pd.DataFrame(ft["table"])
    run.table("first_token_layers", ft_table)
    points = pd.DataFrame(ft["points"])
    run.table("first_token_projection", points)

    rome = edits[edits.variant == "rome"].set_index("case_id")
    collapsed_ids = set(rome.index[rome.collapse])
    normal_ids = set(rome.index) - collapsed_ids
    per_variant = {}
    for v in VARIANTS:
        e = edits[edits.variant == v]
        per_variant[v] = {
            "collapse_rate": _mean(e.collapse.astype(float)),
            "efficacy": _mean(e.efficacy),
            "efficacy_normal": _mean(e[e.case_id.isin(normal_ids)].efficacy),
            "generalization": _mean(e.generalization),
            "locality": _mean(e.locality),
            "neighborhood_score": _mean(e.neighborhood_score),
            "ppl_ratio_median": float(e.ppl_ratio.median()),
        }
    run.table("variants", pd.DataFrame([{"variant": v, **d} for v, d in per_variant.items()]))
    coll, norm = rome.loc[sorted(collapsed_ids)], rome.loc[sorted(normal_ids)]
    at_layer = ft_table[(ft_table.layer == layer) & (ft_table.kind == "mlp_key")].iloc[0]
    eff_n_rome = per_variant["rome"]["efficacy_normal"]
    summary = {
        "n_requests": len(requests),
        "n_requests_subject_first_token": int((rome.position_class == "first").sum()),
        "layer": layer,
        "requests_id": REQUESTS_ID if p["requests_file"] is None else str(p["requests_file"]),
        "collapse_threshold_ppl_ratio": thr,
        **{f"collapse_rate_{v}": per_variant[v]["collapse_rate"] for v in VARIANTS},
        **{f"efficacy_{v}": per_variant[v]["efficacy"] for v in VARIANTS},
        **{f"efficacy_normal_{v}": per_variant[v]["efficacy_normal"] for v in VARIANTS},
        **{f"generalization_{v}": per_variant[v]["generalization"] for v in VARIANTS},
        **{f"locality_{v}": per_variant[v]["locality"] for v in VARIANTS},
        "efficacy_ratio_consistent_prefix_vs_rome_normal": (
            per_variant["consistent_prefix"]["efficacy_normal"] / eff_n_rome if eff_n_rome else float("nan")),
        "denominator_median_collapse": _median_abs(coll.denominator),
        "denominator_median_normal": _median_abs(norm.denominator),
        "denominator_median_subject_first_token": _median_abs(rome[rome.position_class == "first"].denominator),
        "denominator_median_subject_later": _median_abs(rome[rome.position_class != "first"].denominator),
        "denominator_consistent_median": _median_abs(rome.denominator_consistent),
        "numerator_norm_mean_collapse": _mean(coll.numerator_norm),
        "numerator_norm_mean_normal": _mean(norm.numerator_norm),
        "delta_w_norm_median_collapse": float(coll.delta_w_norm.median()) if len(coll) else float("nan"),
        "delta_w_norm_median_normal": float(norm.delta_w_norm.median()) if len(norm) else float("nan"),
        "ppl_ratio_max_normal_rome": float(norm.ppl_ratio.max()) if len(norm) else float("nan"),
        "ppl_ratio_min_collapse_rome": float(coll.ppl_ratio.min()) if len(coll) else float("nan"),
        "ppl_ratio_max_consistent_prefix": float(edits[edits.variant == "consistent_prefix"].ppl_ratio.max()),
        "ppl_base_generic": ref["base"]["generic"],
        "ppl_base_own": ref["base"]["own"],
        "first_token_key_centroid_distance_ratio": float(at_layer.centroid_distance_z),
        "first_token_key_norm_ratio": float(at_layer.norm_ratio),
        **ft["whitened"],
        "first_token_pca_explained_1": ft["explained"][0],
        "first_token_pca_explained_2": ft["explained"][1],
        "cov_corpus": stat.key["corpus"],
        "cov_tokens": stat.n_tokens,
        "cov_condition_number": float(conv.condition_number.iloc[-1]) if len(conv) else float("nan"),
    }
    den_c, den_n = summary["denominator_median_collapse"], summary["denominator_median_normal"]
    summary["denominator_ratio_normal_over_collapse"] = den_n / den_c if den_c and np.isfinite(den_c) else float("nan")
    if not collapsed_ids:
        run.note("no edit collapsed with mixed keys; see denominator_median_subject_first_token vs _later and the "
                 "first-token figures for the mechanism")
    run.note(f"collapse threshold: perplexity ratio > {thr:g} on generic or own-generation text; distribution: {report}")
    run.summary(**summary)

    run.figure("denominator_vs_numerator", figures.denominator_scatter(edits, thr, name))
    run.figure("perplexity_before_after", figures.perplexity_before_after(edits, thr, name))
    run.figure("first_token_projection", figures.first_token_projection(points, layer, name, tuple(ft["explained"]),
                                                                           float(at_layer.norm_ratio)))
    run.figure("first_token_layers", figures.first_token_layers(ft_table, name))
    run.figure("covariance_convergence", figures.covariance_convergence(conv, layer, stat.description.split(" (")[0], name))
    return summary


def load_results(out: str, model_spec: str = "smollm2-135m", quick: bool = False) -> dict[str, pd.DataFrame]:
    """The tables of a finished ``interp run rome`` in ``out`` (running it first if absent), from
    Parquet where present, else from the CSV copies.

    Args:
        out: the output folder given to ``interp run rome --out``.
        model_spec: the model to run when no result exists yet.
        quick: run with ``--quick`` when no result exists yet.

    Returns:
        Table name -> DataFrame, plus ``summary`` (one row) and ``manifest`` params under ``params``.
    """
    import json
    from pathlib import Path

    folder = Path(out) / "rome"
    # Parquet when the run wrote it here; the CSV copies otherwise (the reference results kept in git)
    if not (folder / "summary.json").is_file() or not any((folder / "tables" / f"edits.{e}").is_file() for e in ("parquet", "csv")):
        import interp
        from interp.analyses import run_analysis

        run_analysis("rome", interp.load_model(model_spec), Path(out), quick, 0, False, True, {})
    files = {p.stem: p for p in sorted((folder / "tables").glob("*.csv"))}
    files.update({p.stem: p for p in sorted((folder / "tables").glob("*.parquet"))})
    tables = {k: pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p) for k, p in files.items()}
    tables["summary"] = pd.DataFrame([json.loads((folder / "summary.json").read_text())])
    manifest = json.loads((folder / "manifest.json").read_text())
    tables["params"] = pd.DataFrame([{k: str(v) for k, v in manifest.get("params", {}).items()}])
    tables["model"] = pd.DataFrame([{"spec": (manifest.get("model") or {}).get("spec", model_spec)}])
    return tables
