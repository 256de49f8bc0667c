"""``interp run rome``: ROME edits, their collapse, and the consistent-key fix (Yang et al. 2024).

The run follows the paper's steps; each is one function here, and its equation lives in the module
it calls:

1. :func:`context_templates` - prefixes sampled top-5 from the model (``compute_u``);
2. :func:`key_statistics` - C = E[k kᵀ] on Wikipedia text, or C = I, and how C⁻¹k̄ converges
   (``layer_stats``);
3. :func:`request_keys` - kᵘ and k̄ = mean over contexts (``compute_u``);
4. :func:`reference_perplexity` - texts whose perplexity ratio flags a collapse (``collapse``);
5. :func:`edit_request` per request - v* = W kᵘ + δ (``compute_v``), ΔW per key variant
   (``rome_main``), CounterFact scores (``evaluate``) and perplexity under the edit; under
   ``torchrun`` the requests are dealt to the ranks (:func:`shared_edits`);
6. :func:`first_token_anomaly` - first-position keys against later ones (``first_token``);
7. :func:`report` - per-variant and per-position tables, the summary and the claims table
   (``summary``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
import torch

from interp import distributed
from interp.corpus import natural_texts
from interp.errors import InterpError
from interp.model import Model, portable_path
from interp.progress import track
from interp.rome import figures
from interp.rome.params import PARAMS
from interp.rome.collapse import (
    ReferencePerplexity, collapse_threshold_report, edited_perplexity, is_collapse, reference_perplexity as _reference,
    reference_tails,
)
from interp.rome.compute_u import RequestKeys, compute_keys, generate_prefixes
from interp.rome.compute_v import compute_v
from interp.rome.evaluate import edit_scores, eval_prompts, next_token_logprobs
from interp.rome.first_token import first_token_report
from interp.rome.layer_stats import IDENTITY, LayerStats, inverse_convergence, inverse_covariance, layer_stats
from interp.rome.requests import (
    REQUESTS_ID, EditRequest, country_capital_requests, load_requests, subject_position_class,
)
from interp.rome.rome_main import ALL_VARIANTS, applied_edit, normalized_denominator, rome_direction, rome_update
from interp.rome.summary import claims_table, edit_summary, position_table, variant_table

DESCRIPTION = "ROME editing and its collapse (Yang et al. 2024): mixed vs consistent keys, first-token keys"

# the parameters are declared (type, range, default, quick default, unit, meaning) in interp/rome/params.py
DEFAULTS: dict[str, Any] = PARAMS.defaults()

QUICK: dict[str, Any] = PARAMS.quick_values()

LAYER_RULE = "round(0.2 * n_layers)"


def default_layer(model: Model) -> int:
    """The MLP layer ROME edits by default: the registry's ``rome_layer`` for a known model, else
    20% of the depth, ``round(0.2 * n_layers)`` (the rule the registry's values follow).

    ROME edits an early-middle MLP, where causal tracing finds the subject's last token's MLP
    effect on factual recall largest: layer 17 of 48 in GPT-2-XL (35%), 5 of 28 in GPT-J (18%).
    The rule gives layer 6 of SmolLM2-135M's 30, 4 of Gemma 3 270M's 18 and 5 of Qwen2.5 0.5B's
    24; every run can set ``layer``.
    """
    from interp.loading import registry

    entry = registry().get(getattr(model, "spec", ""), {}) if isinstance(getattr(model, "spec", None), str) else {}
    if "rome_layer" in entry:
        return int(entry["rome_layer"])
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


def resolve_params(params: dict[str, Any], quick: bool) -> dict[str, Any]:
    """:data:`DEFAULTS` updated with ``params``; with ``quick``, :data:`QUICK` sizes for every
    parameter the caller did not set (a value set explicitly is kept even when it equals the default)."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise InterpError(f"rome has no parameter(s) {sorted(unknown)}")
    p = {**DEFAULTS, **params}
    if quick:
        p.update({k: v for k, v in QUICK.items() if k not in params})
    bad = set(p["variants"]) - set(ALL_VARIANTS)
    if bad or "rome" not in p["variants"]:
        raise InterpError(f"variants must include 'rome' and come from {ALL_VARIANTS}; got {p['variants']}")
    if p["cov"] not in ("second_moment", IDENTITY):
        raise InterpError(f"cov must be 'second_moment' or 'identity', got {p['cov']!r}")
    return p


# ---------------------------------------------------------------------------------- the steps


def edit_requests(model: Model, p: dict, run: Any) -> list[EditRequest]:
    """The packaged (or user's) CounterFact-layout requests, plus country -> capital requests built
    from real facts when asked and available."""
    requests = select_requests(load_requests(p["requests_file"]), model, int(p["n_requests"]))
    if int(p["country_requests"]) > 0:
        try:
            requests += country_capital_requests(int(p["country_requests"]), seed=int(p["prefix_seed"]))
        except InterpError as e:
            run.note(f"no country requests: {e}")
    return requests


def context_templates(model: Model, p: dict) -> list[str]:
    """ROME's context templates: prefixes sampled top-k from the model (``compute_u``)."""
    return generate_prefixes(model, p["prefix_lengths"], seed=p["prefix_seed"], top_k=int(p["prefix_top_k"]))


def key_statistics(model: Model, p: dict, layer: int) -> LayerStats:
    """C = E[k kᵀ] at the edited layer on the corpus, or C = I (``layer_stats``)."""
    corpus = IDENTITY if p["cov"] == IDENTITY else p["cov_corpus"]
    return layer_stats(model, layer, corpus, int(p["cov_tokens"]), int(p["cov_max_tokens"]), seed=p["prefix_seed"],
                       use_cache=bool(p["cov_cache"]))


def request_keys(model: Model, p: dict, layer: int, requests: Sequence[EditRequest], prefixes: Sequence[str],
                 shard_dir: Optional[str] = None) -> RequestKeys:
    """kᵘ (bare prompt) and k̄ (mean over the contexts) of every request (``compute_u``); with
    ``shard_dir``, the pass is shared among the ``torchrun`` ranks."""
    keys = compute_keys(model, requests, layer, prefixes, include_bare=bool(p["kbar_include_bare"]), shard_dir=shard_dir)
    assert keys is not None  # rank 0 gets the gathered keys
    return keys


def reference_perplexity(model: Model, p: dict, prefixes: Sequence[str]) -> ReferencePerplexity:
    """The collapse probe: reference texts and their unedited perplexity (``collapse``)."""
    texts, _ = natural_texts(p["text_corpus"], "heldout")
    return _reference(model, prefixes, p["ppl_generic"], p["ppl_max_tokens"], p["ppl_generations"], p["ppl_gen_tokens"],
                      seed=p["eval_seed"], texts=texts)


FIX_ANOMALY_RATIO = 0.5  # bare v0 norm / prefixed mean norm below which the fix re-optimises v*


def edit_request(model: Model, p: dict, layer: int, req: EditRequest, i: int, keys: RequestKeys, c_inv: torch.Tensor,
                 prefixes: list[str], ref: ReferencePerplexity, tails: Optional[dict] = None) -> list[dict]:
    """One request: v* (``compute_v``), then per key variant ΔW (``rome_main``), its CounterFact
    scores (``evaluate``) and the perplexity ratio under it (``collapse``; from the reference
    texts' streams entering the edited layer when ``tails`` has them: :func:`reference_tails`).
    Rows carry the seconds each sub-step took (``seconds_v_star``, ``seconds_evaluate``,
    ``seconds_perplexity``)."""
    t0 = time.perf_counter()

    def v_star(reference: str) -> Any:
        return compute_v(
            model, req, layer, [""] + prefixes[: p["v_contexts"]], steps=p["v_steps"], lr=p["v_lr"], kl_factor=p["kl_factor"],
            weight_decay=p["v_weight_decay"], clamp_norm_factor=p["clamp_norm_factor"], early_stop_loss=p["early_stop_loss"],
            prefix_cache=bool(p["v_prefix_cache"]), clamp_reference=reference,
        )

    # ROME's v* is clamped at the bare prompt's v0. With fix_clamp_reference="prefixed", the consistent
    # variants get their own v* (clamp scaled by the output's mean norm over the prefixed contexts)
    # where the bare v0 is anomalous: its norm below FIX_ANOMALY_RATIO of that mean (a subject at the
    # sequence's first position: SmolLM2 about 5 against 20-30); elsewhere both scales agree (ratios
    # near 1) and ROME's v* is shared, as in the released C-ROME code.
    fixes = [v for v in p["variants"] if v != "rome"]
    v_rome = v_star("bare")
    anomalous = float(v_rome.v0.norm()) < FIX_ANOMALY_RATIO * v_rome.prefixed_norm
    ref_fix = "prefixed" if p["fix_clamp_reference"] == "prefixed" and fixes and anomalous else "bare"
    v_fix = v_star("prefixed") if ref_fix == "prefixed" else v_rome
    t_v = time.perf_counter() - t0
    t_eval = t_ppl = 0.0
    t = time.perf_counter()
    bare = eval_prompts(model, req)
    pref = eval_prompts(model, req, prefixes, seed=p["eval_seed"])
    before = {False: next_token_logprobs(model, bare.texts), True: next_token_logprobs(model, pref.texts)}
    t_eval += time.perf_counter() - t
    off = 1 if model.prepend_bos else 0
    u = rome_direction(c_inv, keys.k_bar[i])
    den_norm = {"mixed": normalized_denominator(u, keys.k_u[i]), "consistent": normalized_denominator(u, keys.k_bar[i])}
    rows = []
    for variant in p["variants"]:
        vs = v_rome if variant == "rome" else v_fix
        up = rome_update(c_inv, keys.k_u[i], keys.k_bar[i], vs.delta, keys.w_k_u[i], keys.w_k_bar[i], variant)
        prefixed = variant == "consistent_prefix"
        prompts = pref if prefixed else bare
        with applied_edit(model, layer, up):
            t = time.perf_counter()
            after = next_token_logprobs(model, prompts.texts)
            t_eval += time.perf_counter() - t
            t = time.perf_counter()
            ppl = edited_perplexity(model, ref, prefixed, tails)
            t_ppl += time.perf_counter() - t
        k = keys.k_u[i] if variant == "rome" else keys.k_bar[i]
        rows.append({
            "case_id": req.case_id, "relation": req.relation, "subject": req.subject, "prompt": req.text,
            "target_true": req.target_true, "target_new": req.target_new,
            "subject_position": keys.positions[i],
            "position_class": subject_position_class(keys.positions[i], req.prompt, off),
            "variant": variant,
            "numerator_norm": float(up.numerator.norm()),
            "denominator": up.denominator,
            "denominator_normalized": up.denominator / float(up.u.norm()),
            "denominator_cosine": up.denominator / float(up.u.norm() * k.norm()),
            "denominator_normalized_mixed": den_norm["mixed"],
            "denominator_normalized_consistent": den_norm["consistent"],
            "delta_w_norm": up.norm,
            "k_u_norm": float(keys.k_u[i].norm()), "k_bar_norm": float(keys.k_bar[i].norm()),
            "k_u_k_bar_cosine": float(torch.nn.functional.cosine_similarity(keys.k_u[i], keys.k_bar[i], dim=0)),
            "v0_norm": float(vs.v0.norm()), "delta_norm": float(vs.delta.norm()), "delta_rel_norm": vs.delta_rel_norm,
            "clamp_bound": vs.clamp_bound, "clamp_norm": vs.clamp_norm,
            "clamp_reference": "bare" if variant == "rome" else ref_fix,
            "v0_prefixed_norm": v_rome.prefixed_norm,
            "v_steps": vs.steps, "v_final_loss": vs.losses[-1], "v_final_nll": vs.nll[-1],
            **ppl,
            **edit_scores(prompts, before[prefixed], after),
        })
    for r in rows:
        r["denominator_mixed"] = rows[0]["denominator"] if rows[0]["variant"] == "rome" else float("nan")
        r["denominator_consistent"] = float(u.double() @ keys.k_bar[i].double())
        r.update(seconds_v_star=t_v, seconds_evaluate=t_eval, seconds_perplexity=t_ppl)
    return rows


def shared_edits(model: Model, *, p: dict, layer: int, requests: Sequence[EditRequest], todo: Sequence[int],
                 keys: RequestKeys, c_inv: torch.Tensor, prefixes: list[str], ref: ReferencePerplexity,
                 shard_dir: str) -> Optional[list[list[dict]]]:
    """:func:`edit_request` for the requests ``todo`` (indices into ``requests``), dealt to the
    ``torchrun`` ranks one request at a time (:func:`interp.distributed.map_chunks`).

    The requests are independent, so each rank edits its share on its own copy of the model and
    stores each request's rows under ``shard_dir`` as it finishes (a restarted pass redoes only the
    missing ones); every rank builds the reference texts' streams (:func:`reference_tails`) once.
    Rank 0 calls this and dispatches it to the other ranks; a request gives the same rows whichever
    rank edits it.

    Returns:
        Each request's rows, in the order of ``todo``, on rank 0; None on the other ranks.
    """
    if distributed.current().is_main:
        distributed.dispatch("interp.rome.pipeline:shared_edits", p=p, layer=layer, requests=requests, todo=list(todo),
                             keys=keys, c_inv=c_inv, prefixes=prefixes, ref=ref, shard_dir=shard_dir)
    tails: dict[str, Any] = {}

    def compute(k: int) -> list[dict]:
        if "t" not in tails:
            tails["t"] = reference_tails(model, ref, layer)
        i = todo[k]
        return edit_request(model, p, layer, requests[i], i, keys, c_inv, prefixes, ref, tails["t"])

    key = {"pass": "rome-edits-v1", "model": model.weight_hash, "precision": model.precision, "layer": layer,
           "params": json.dumps(p, sort_keys=True, default=str), "prefixes": prefixes,
           "cases": [requests[i].case_id for i in todo]}
    # a first-position subject costs about twice a later one (its fix re-optimises v*): the ranks take
    # requests from a shared queue (costly ones first, as ``todo`` comes) instead of a fixed deal
    return distributed.map_chunks(len(todo), compute, Path(shard_dir), key, desc="ROME edits", values="stage",
                                  schedule="dynamic")


def first_token_anomaly(model: Model, p: dict, layer: int, keys: RequestKeys, requests: Sequence[EditRequest],
                        c_inv: torch.Tensor) -> dict:
    """First-position keys against later ones, per layer and projected (``first_token``)."""
    return first_token_report(model, layer, keys.k_u, keys.k_bar, keys.positions, [r.subject for r in requests], c_inv,
                              p["first_token_texts"], p["ppl_max_tokens"], p["first_token_layer_step"],
                              texts=natural_texts(p["text_corpus"], "heldout")[0])


def report(run: Any, edits: pd.DataFrame, variants: Sequence[str], ft: dict, layer: int) -> dict:
    """Per-variant and per-position tables, the headline numbers and the claims table (``summary``)."""
    run.table("variants", variant_table(edits, variants))
    positions = position_table(edits, variants)
    run.table("positions", positions)
    ft_table = pd.DataFrame(ft["table"])
    at_layer = ft_table[(ft_table.layer == layer) & (ft_table.kind == "mlp_key")].iloc[0]
    summary = {
        **edit_summary(edits, variants),
        "first_token_key_centroid_distance_ratio": float(at_layer.centroid_distance_z),
        "first_token_key_norm_ratio": float(at_layer.norm_ratio),
        **ft["whitened"],
        "first_token_pca_explained_1": ft["explained"][0],
        "first_token_pca_explained_2": ft["explained"][1],
    }
    run.table("claims", claims_table(summary, positions))
    return summary


# ---------------------------------------------------------------------------------- the run


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
    variants = list(p["variants"])

    requests = edit_requests(model, p, run)
    prefixes = run.stage("prefixes", lambda: context_templates(model, p))
    if p["v_contexts"] > len(prefixes):
        raise InterpError(f"v_contexts={p['v_contexts']} exceeds the {len(prefixes)} generated prefixes")
    run.table("prefixes", pd.DataFrame({"prefix": prefixes, "n_tokens": [len(model.encode(x)) for x in prefixes]}))

    with run.timed("covariance"):
        stat = key_statistics(model, p, layer)
    where = f"{'read from' if stat.cached else 'written to'} {portable_path(str(stat.path))}" if stat.path else "not cached"
    run.note(f"key second moment: {stat.n_tokens} tokens from {stat.n_samples} texts of {stat.description} "
             f"(corpus id {stat.key['corpus']}; {where})")
    c_inv = inverse_covariance(stat.mom2, float(p["cov_ridge"])).float()
    world = distributed.current()  # under torchrun the ranks share the keys pass and the edits
    keys = run.stage("keys", lambda: request_keys(model, p, layer, requests, prefixes,
                                                  str(run.dir / "shards" / "keys") if world.size > 1 else None))
    with run.timed("covariance_convergence"):
        conv = pd.DataFrame(inverse_convergence(stat, keys.k_bar, float(p["cov_ridge"])))
    run.table("covariance_convergence", conv)

    ref = run.stage("reference", lambda: reference_perplexity(model, p, prefixes))
    rows: list[dict] = []
    tails: dict[str, Any] = {}

    def ref_tails() -> Any:  # made when the first edit is computed (a resumed run may need none)
        if "t" not in tails:
            tails["t"] = reference_tails(model, ref, layer)
        return tails["t"]

    t_edits = time.perf_counter()
    todo = [i for i, req in enumerate(requests) if not run.stored(f"edit_{req.case_id}", key=[layer, req.case_id])]
    shared: dict[int, list[dict]] = {}
    if world.size > 1 and len(todo) > 1:  # under torchrun: the edits are dealt to the ranks
        # subjects at the sequence's first position first: the fix may optimise their v* a second time,
        # so taking them before the others from the ranks' shared queue evens the ranks' finish (rows are
        # put back in order)
        off = 1 if model.prepend_bos else 0
        todo.sort(key=lambda i: int(keys.positions[i]) != off)
        got = shared_edits(model, p=p, layer=layer, requests=requests, todo=todo, keys=keys, c_inv=c_inv,
                           prefixes=prefixes, ref=ref, shard_dir=str(run.dir / "shards" / "edits"))
        shared = dict(zip(todo, got or []))
        shutil.rmtree(run.dir / "shards", ignore_errors=True)  # gathered (and stored as stages below): spent
    for i, req in enumerate(track(requests, desc="ROME edits", unit="edit", disable=bool(shared))):
        stage, key = f"edit_{req.case_id}", [layer, req.case_id]
        if i in shared:  # edited by the ranks: stored as the stage this loop would have made
            secs = sum(shared[i][0][f"seconds_{part}"] for part in ("v_star", "evaluate", "perplexity"))
            rows += run.put(stage, shared[i], key=key, seconds=secs, by=f"{world.size} ranks")
        else:
            rows += run.stage(stage, lambda: edit_request(model, p, layer, req, i, keys, c_inv, prefixes, ref, ref_tails()),
                              key=key)
    run.stage_times["edits"] = {"seconds": time.perf_counter() - t_edits, "resumed": not todo, "computed": len(todo),
                                "ranks": world.size if shared else 1}
    edits = pd.DataFrame(rows)
    thr = float(p["collapse_ratio"])
    edits["collapse"] = [is_collapse(r, thr) for r in edits.ppl_ratio]
    run.table("edits", edits)
    per_req = edits.drop_duplicates("case_id")
    for part in ("v_star", "evaluate", "perplexity"):  # summed over the requests (over the ranks' processes: see "edits")
        run.stage_times[f"edits_{part}"] = {"seconds": float(per_req[f"seconds_{part}"].sum()), "resumed": False,
                                            "per_request": float(per_req[f"seconds_{part}"].mean()), "summed": True}
    threshold = collapse_threshold_report(edits.ppl_ratio.tolist(), thr)
    run.table("collapse_threshold", pd.DataFrame([threshold]))

    ft = run.stage("first_token", lambda: first_token_anomaly(model, p, layer, keys, requests, c_inv))
    ft_table = pd.DataFrame(ft["table"])
    run.table("first_token_layers", ft_table)
    points = pd.DataFrame(ft["points"])
    run.table("first_token_projection", points)

    summary = {
        "n_requests": len(requests),
        "n_requests_country": int(sum(r.relation == "country_capital" for r in requests)),
        "n_requests_subject_first_token": int((edits[edits.variant == "rome"].position_class == "first").sum()),
        "layer": layer,
        "layer_rule": LAYER_RULE if p["layer"] is None else "set",
        "requests_id": REQUESTS_ID if p["requests_file"] is None else str(p["requests_file"]),
        "collapse_threshold_ppl_ratio": thr,
        **report(run, edits, variants, ft, layer),
        "ppl_base_generic": ref.base["generic"],
        "ppl_base_own": ref.base["own"],
        "cov_corpus": IDENTITY if p["cov"] == IDENTITY else stat.key["corpus"],
        "text_corpus": natural_texts(p["text_corpus"], "heldout")[1],
        "cov_tokens": stat.n_tokens,
        "cov_condition_number": float(conv.condition_number.iloc[-1]) if len(conv) else float("nan"),
        "cov_direction_cosine_half_tokens": float(conv.direction_cosine_mean.iloc[-2]) if len(conv) > 1 else float("nan"),
        "seconds_per_request": float(per_req[["seconds_v_star", "seconds_evaluate", "seconds_perplexity"]].sum(1).mean()),
    }
    if not summary["n_collapse_rome"]:
        run.note("no edit collapsed with mixed keys; see denominator_normalized_median_subject_first_token vs _later and "
                 "the first-token figures for the mechanism")
    run.note(f"collapse threshold: perplexity ratio > {thr:g} on generic or own-generation text; distribution: {threshold}")
    run.summary(**summary)

    at_layer = ft_table[(ft_table.layer == layer) & (ft_table.kind == "mlp_key")].iloc[0]
    run.figure("denominator_vs_numerator", figures.denominator_scatter(edits, thr, name))
    run.figure("perplexity_before_after", figures.perplexity_before_after(edits, thr, name))
    run.figure("first_token_projection", figures.first_token_projection(points, layer, name, tuple(ft["explained"]),
                                                                           float(at_layer.norm_ratio)))
    run.figure("first_token_layers", figures.first_token_layers(ft_table, name))
    if len(conv):
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
