"""The ranked search over many random samples: recall and cost against the stored consensus verdicts.

One run of ``interp run glitch`` draws one random sample; the search's recall and cost depend on
that draw (how many glitch tokens the sample holds, where the cross-fitted cut-off falls). With the
consensus verdicts stored for the whole vocabulary (``python -m interp.glitch.scan --consensus``),
every draw can be replayed without asking the model (against the consensus label, and against the
single-prompt label with the single prompt as the oracle): this script runs
:func:`interp.glitch.search.ranked_search` for ``--seeds`` samples with the run's own stop (its aim
and budget), looks every verdict up, and prices each cascade call at the tokens it forwards
(:func:`interp.glitch.oracle.call_tokens` of the stored prompts' suffix lengths and reply length), as
the run prices its own budget; beside it, each draw's other cut-offs without a budget. Every number
is the same on every machine. Writes ``search_seeds.csv`` (one row per label, seed, aim and budget)
to ``--out``.

    python analyses/glitch_search_seeds.py [--quick] [--model gemma-3-270m --out figures/full/gemma-3-270m/glitch/tables]
"""

import time
from pathlib import Path

import numpy as np
import pandas as pd

import interp
from interp.analyses import script_parser
from interp.glitch.baselines import token_statistics
from interp.glitch.oracle import call_tokens
from interp.glitch.pipeline import DEFAULTS
from interp.glitch.scan import load_consensus
from interp.glitch.search import aim_sweep, ranked_search

if __name__ == "__main__":
    ap = script_parser(__doc__, out="figures/full/smollm2-135m/glitch/tables", out_help="folder for search_seeds.csv")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--aims", default="0.8,0.85,0.9")
    a = ap.parse_args()
    seeds = 4 if a.quick else a.seeds
    table, meta = load_consensus(a.model)
    prompts = meta["prompts"]
    per_call = {p: float(call_tokens(meta["templates"][p]["suffix_len"], meta["max_new_tokens"])) for p in prompts}
    asked = {p: (table[p] != "").to_numpy() for p in prompts}
    cost = sum(asked[p] * per_call[p] for p in prompts)
    glitch = (table.consensus_all == "glitch").to_numpy()
    exhaustive = float(cost.sum())
    model = interp.load_model(a.model)
    t0 = time.perf_counter()
    X = token_statistics(model, table.token_id.to_numpy()).to_numpy()
    feature_s = time.perf_counter() - t0
    aims = [float(x) for x in a.aims.split(",")]
    # the single-prompt label beside it: its own verdicts, each call priced at that prompt's tokens per call
    labels = {"consensus": (glitch, cost, exhaustive)}
    single = (table[prompts[0]] == "glitch").to_numpy()
    single_cost = np.full(len(table), per_call[prompts[0]])
    labels["single_prompt"] = (single, single_cost, float(single_cost.sum()))
    budget = float(DEFAULTS["search_budget"]) if DEFAULTS["search_budget"] else None
    rows = []
    for name, (y, c, full) in labels.items():
        for seed in range(seeds):
            # the run's own rule: its aim's cut-off, verified best first within its budget of forwarded tokens
            rs = ranked_search(X, lambda pos: y[pos], sample_ratio=float(DEFAULTS["search_sample_ratio"]),
                               aim=float(DEFAULTS["search_aim"]), C=float(DEFAULTS["search_C"]), seed=seed,
                               feature_seconds=feature_s, budget=budget, cost=lambda pos: c[pos], overhead=0.0)
            fixed = float(c[rs.in_sample].sum())
            recall = float(rs.found.sum() / y.sum())
            rows.append({"label": name, "seed": seed, "aim": rs.aim, "budget": budget, "stopped_by": rs.stopped_by,
                         "sample_glitch": int(rs.sample_glitch.sum()), "verified_share": float(rs.predicted.mean()),
                         "recall": recall, "f1": 2 * recall / (1 + recall),
                         "cost_ratio": (fixed + float(c[rs.predicted].sum())) / full})
            # other cut-offs of the same draw, without a budget
            for aim, cut, pred in aim_sweep(rs, aims):
                recall = float(((rs.in_sample | pred) & y).sum() / y.sum())
                rows.append({"label": name, "seed": seed, "aim": aim, "budget": None, "stopped_by": "aim",
                             "sample_glitch": int(rs.sample_glitch.sum()), "verified_share": float(pred.mean()),
                             "recall": recall, "f1": 2 * recall / (1 + recall), "cost_ratio": (fixed + float(c[pred].sum())) / full})
    out = pd.DataFrame(rows)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    out.to_csv(Path(a.out) / "search_seeds.csv", index=False)
    target = out.assign(met=(out.recall >= 0.8) & (out.f1 >= 0.89) & (out.cost_ratio <= 0.5),
                        rule=out.budget.map(lambda b: f"budget {b:g}" if pd.notna(b) else "none"))
    print(target.groupby(["label", "rule", "aim"]).agg(recall_mean=("recall", "mean"), recall_min=("recall", "min"),
                                     ratio_mean=("cost_ratio", "mean"), ratio_max=("cost_ratio", "max"),
                                     share_meeting_target=("met", "mean")).round(3).to_string())
