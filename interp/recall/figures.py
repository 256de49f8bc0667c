"""Plotly figures of the recall tables (they draw what the tables hold; no statistics here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def logit_lens_figure(table: pd.DataFrame, model_name: str) -> go.Figure:
    """Answer probability and median rank by layer, per relation; solid zero-shot, dashed few-shot."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("answer probability (logit lens)", "median answer rank"))
    rels = list(dict.fromkeys(table["relation"]))
    shots = sorted(table["shots"].unique())
    for i, rel in enumerate(rels):
        col = "black" if rel == "all" else _COLORS[i % len(_COLORS)]
        for s in shots:
            g = table[(table["relation"] == rel) & (table["shots"] == s)].sort_values("layer")
            dash = "solid" if s == 0 else "dash"
            width = 4 if rel == "all" else 1.5
            fig.add_trace(go.Scatter(x=g["layer"], y=g["answer_prob"], mode="lines", name=rel, legendgroup=rel,
                                     showlegend=bool(s == shots[0]), hovertext=f"{s}-shot",
                                     line=dict(color=col, dash=dash, width=width)), row=1, col=1)
            fig.add_trace(go.Scatter(x=g["layer"], y=g["answer_rank_median"] + 1, mode="lines", name=rel, legendgroup=rel,
                                     showlegend=False, hovertext=f"{s}-shot", line=dict(color=col, dash=dash, width=width)),
                          row=1, col=2)
    fig.update_xaxes(title_text="layer (residual stream after it)")
    fig.update_yaxes(title_text="mean P(answer)", row=1, col=1)
    fig.update_yaxes(title_text="median rank + 1 (log)", type="log", row=1, col=2)
    fig.update_layout(title=f"Where the answer appears and what the last layers take away — {model_name}<br>"
                            "<sup>known facts; solid: zero-shot, dashed: few-shot; black: all relations</sup>",
                      width=1300, height=620, legend=dict(font=dict(size=9)))
    return fig


def argument_heads_figure(scores: pd.DataFrame, top: list[str], model_name: str) -> go.Figure:
    """Layer x head heatmap of the argument-head score and the attention-vs-attribution scatter."""
    g = scores[scores["relation"] == "all"]
    layers = sorted(g["layer"].unique())
    heads = sorted(g["head"].unique())
    grid = g.pivot(index="layer", columns="head", values="score").reindex(index=layers, columns=heads)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("score per head", "attention vs attribution"),
                        horizontal_spacing=0.15, column_widths=[0.4, 0.6])
    fig.add_trace(go.Heatmap(z=grid.values, x=[str(h) for h in heads], y=layers, colorscale="Viridis",
                             colorbar=dict(title="score", x=0.36, len=0.9)), row=1, col=1)
    is_top = g["name"].astype(str).isin(top)
    fig.add_trace(go.Scatter(x=g.loc[~is_top, "attn_arg"], y=g.loc[~is_top, "dla_arg"], mode="markers", name="other heads",
                             text=g.loc[~is_top, "name"], marker=dict(color="#9aa", size=5)), row=1, col=2)
    fig.add_trace(go.Scatter(x=g.loc[is_top, "attn_arg"], y=g.loc[is_top, "dla_arg"], mode="markers+text", name="top argument heads",
                             text=g.loc[is_top, "name"], textposition="top center", marker=dict(color="#d62728", size=10)),
                  row=1, col=2)
    fig.update_xaxes(title_text="head", row=1, col=1)
    fig.update_yaxes(title_text="layer", row=1, col=1)
    fig.update_xaxes(title_text="mean attention from last position to argument tokens", row=1, col=2)
    fig.update_yaxes(title_text="mean DLA onto argument token (logits)", row=1, col=2)
    fig.update_layout(title=f"Argument-passing heads — {model_name}<br><sup>score = mean attention to the argument × "
                            "max(mean DLA onto the argument's token, 0); zero-shot, known facts, relations pooled</sup>",
                      width=1300, height=650, margin=dict(t=110), legend=dict(x=0.99, y=0.02, xanchor="right", yanchor="bottom",
                                                                       bgcolor="rgba(255,255,255,0.7)"))
    return fig


def argument_ablation_figure(draws: pd.DataFrame, base_prob: float, model_name: str) -> go.Figure:
    """Answer probability: no ablation, argument heads mean-ablated, random heads (each draw and mean)."""
    arg = draws[draws["ablation"] == "argument heads"]
    rnd = draws[draws["ablation"] == "random heads"]
    x = ["no ablation", "top-k argument heads", "k random heads (same layers)"]
    y = [base_prob, float(arg["answer_prob"].mean()), float(rnd["answer_prob"].mean()) if len(rnd) else np.nan]
    err = [0, 0, float(rnd["answer_prob"].std(ddof=0)) if len(rnd) > 1 else 0]
    fig = go.Figure(go.Bar(x=x, y=y, error_y=dict(type="data", array=err), marker_color=["#7f7f7f", "#d62728", "#1f77b4"],
                           text=[f"{v:.3f}" for v in y], textposition="inside", insidetextanchor="middle",
                           textfont=dict(color="white", size=14), name="mean over prompts (± sd over draws)"))
    if len(rnd):
        fig.add_trace(go.Scatter(x=[x[2]] * len(rnd), y=rnd["answer_prob"], mode="markers", name="random draws",
                                 marker=dict(color="black", size=6), text=rnd["heads"]))
    fig.update_layout(title=f"Mean-ablating argument heads vs random heads — {model_name}<br>"
                            f"<sup>heads: {arg['heads'].iloc[0] if len(arg) else ''}; zero-shot known facts</sup>",
                      yaxis_title="mean P(answer)", width=900, height=560)
    return fig


def mlp_decomposition_figure(fits: pd.DataFrame, model_name: str) -> go.Figure:
    """Per relation and layer: R² of the activation part, and the intercept's answer percentile."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("R² in sample (solid) and held out (dotted)",
                                                        "intercept: task AUC (own vs other tasks' answers)",
                                                        "mean coefficient α"), horizontal_spacing=0.08)
    for i, rel in enumerate(dict.fromkeys(fits["relation"])):
        g = fits[fits["relation"] == rel].sort_values("layer")
        c = _COLORS[i % len(_COLORS)]
        fig.add_trace(go.Scatter(x=g["layer"], y=g["r2"], mode="lines+markers", name=rel, legendgroup=rel,
                                 line=dict(color=c), marker=dict(size=4)), row=1, col=1)
        if "r2_cv" in g:
            fig.add_trace(go.Scatter(x=g["layer"], y=g["r2_cv"], mode="lines", name=rel, legendgroup=rel, showlegend=False,
                                     line=dict(color=c, dash="dot")), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["layer"], y=g["task_auc"] if "task_auc" in g else g["answer_percentile"], mode="lines+markers",
                                 name=rel, legendgroup=rel, showlegend=False, line=dict(color=c), marker=dict(size=4)), row=1, col=2)
    agg = fits.groupby("layer")[["alpha_argument_mean", "alpha_other_mean"]].mean().reset_index()
    fig.add_trace(go.Scatter(x=agg["layer"], y=agg["alpha_argument_mean"], mode="lines+markers", name="argument heads (α)",
                             line=dict(color="#d62728", width=3)), row=1, col=3)
    fig.add_trace(go.Scatter(x=agg["layer"], y=agg["alpha_other_mean"], mode="lines+markers", name="other heads (α)",
                             line=dict(color="#7f7f7f", width=3)), row=1, col=3)
    for c in (1, 2, 3):
        fig.update_xaxes(title_text="MLP layer", row=1, col=c)
    fig.update_yaxes(title_text="R²", row=1, col=1)
    fig.update_yaxes(title_text="AUC (0.5 = no task preference)", row=1, col=2)
    fig.update_yaxes(title_text="α (relations averaged)", row=1, col=3)
    fig.update_layout(title=f"MLP = Σ α·(head output − task mean) (activation) + β (function application) — {model_name}",
                      width=1400, height=560, legend=dict(font=dict(size=9)))
    return fig


def anti_overconfidence_figure(table: pd.DataFrame, freq_source: str, model_name: str) -> go.Figure:
    """Final-layer components: attention to position 0 and frequency correlation vs answer attribution."""
    heads = table[table["kind"] == "head"]
    other = table[(table["kind"] != "head") & (table["relation"] == "all")]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("heads: attention to first position vs DLA on answer",
                                                        "Spearman(component logits, log frequency) vs DLA on answer"),
                        horizontal_spacing=0.1)
    for i, L in enumerate(sorted(heads["layer"].unique())):
        g = heads[heads["layer"] == L]
        c = _COLORS[i % len(_COLORS)]
        fig.add_trace(go.Scatter(x=g["attn_first"], y=g["dla_answer"], mode="markers+text", text=g["name"], textposition="top center",
                                 name=f"layer {L} heads", legendgroup=f"L{L}", marker=dict(color=c, size=9)), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["freq_spearman"], y=g["dla_answer"], mode="markers+text", text=g["name"], textposition="top center",
                                 name=f"layer {L} heads", legendgroup=f"L{L}", showlegend=False, marker=dict(color=c, size=9)),
                      row=1, col=2)
    if len(other):
        fig.add_trace(go.Scatter(x=other["freq_spearman"], y=other["dla_answer"], mode="markers+text", text=other["name"],
                                 textposition="bottom center", name="first-position heads (sum) / MLPs / intercepts",
                                 marker=dict(color="black", symbol="diamond", size=11)), row=1, col=2)
    fig.add_hline(y=0, line=dict(color="#bbb", dash="dot"))
    fig.add_vline(x=0.5, line=dict(color="#bbb", dash="dot"), row=1, col=1)
    fig.update_xaxes(title_text="mean attention from last position to position 0", row=1, col=1)
    fig.update_xaxes(title_text=f"Spearman over tokens that occur [{freq_source}]", row=1, col=2)
    fig.update_yaxes(title_text="mean DLA on correct answer (logits)", row=1, col=1)
    fig.update_yaxes(title_text="mean DLA on correct answer (logits)", row=1, col=2)
    fig.update_layout(title=f"Anti-overconfidence in the final layers — {model_name}<br><sup>zero-shot, known facts</sup>",
                      width=1300, height=620)
    return fig


def mitigation_figure(table: pd.DataFrame, chosen: str, text_id: str, model_name: str) -> go.Figure:
    """Accuracy and answer probability before and after each mitigation, on test and independent facts."""
    g = table[table["relation"] == "all"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy (answer is argmax)", "mean P(answer)"))
    x = [f"{f}<br>{s}" for f, s in dict.fromkeys(zip(g["facts"], g["shots"]))]
    base = g.drop_duplicates(["facts", "shots"])
    for col, metric in ((1, "accuracy"), (2, "answer_prob")):
        fig.add_trace(go.Bar(x=x, y=base[f"{metric}_base"], name="before", marker_color="#7f7f7f", showlegend=col == 1,
                             text=[f"{v:.3f}" for v in base[f"{metric}_base"]], textposition="outside"), row=1, col=col)
        for i, (m, gm) in enumerate(g.groupby("method", sort=False)):
            ppl = f" (ppl {gm['ppl_base'].iloc[0]:.2f} → {gm['ppl_mitigated'].iloc[0]:.2f})" if "ppl_mitigated" in gm else ""
            fig.add_trace(go.Bar(x=[f"{f}<br>{s}" for f, s in zip(gm["facts"], gm["shots"])], y=gm[f"{metric}_mitigated"],
                                 name=f"{m}{ppl}", marker_color=_COLORS[(i + 2) % len(_COLORS)], showlegend=col == 1,
                                 text=[f"{v:.3f}" for v in gm[f"{metric}_mitigated"]], textposition="outside"), row=1, col=col)
    fig.update_xaxes(title_text="facts and prompt form")
    fig.update_layout(barmode="group", width=1300, height=600,
                      title=f"Mitigation (chosen on train facts: {chosen}) — {model_name}<br>"
                            f"<sup>test facts and independent country facts; perplexity on held-out {text_id} text</sup>")
    return fig
