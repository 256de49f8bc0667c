"""Plotly figures of the ROME analysis. They draw tables computed elsewhere; none computes a statistic."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

VARIANT_LABELS = {
    "rome": "original ROME (mixed keys)",
    "consistent": "C-ROME: key k̄, target W kᵘ + δ",
    "consistent_prefix": "C-ROME + test-time prefix",
    "consistent_delta": "key k̄, target W k̄ + δ (earlier variant)",
}
CLASS_SYMBOLS = {"first": "circle", "subject-first": "diamond", "later": "square"}
CLASS_LABELS = {
    "first": "subject = first token",
    "subject-first": "multi-token subject first",
    "later": "subject later in prompt",
}


def denominator_scatter(edits: pd.DataFrame, threshold: float, model_name: str) -> go.Figure:
    """|u^T k| against ||v* - W k|| per edit: mixed keys coloured by collapse, consistent keys in grey."""
    fig = go.Figure()
    rome = edits[edits.variant == "rome"]
    cons = edits[edits.variant == "consistent"]
    for cls, sym in CLASS_SYMBOLS.items():
        c = cons[cons.position_class == cls]
        if len(c):
            fig.add_trace(go.Scatter(
                x=c.denominator_normalized.abs(), y=c.numerator_norm, mode="markers", name=f"consistent k̄ · {CLASS_LABELS[cls]}",
                marker=dict(symbol=sym, color="lightgray", size=8, line=dict(width=1, color="gray")), text=c.subject,
            ))
    for collapsed, color in ((False, "#1f77b4"), (True, "#d62728")):
        for cls, sym in CLASS_SYMBOLS.items():
            r = rome[(rome.collapse == collapsed) & (rome.position_class == cls)]
            if len(r):
                fig.add_trace(go.Scatter(
                    x=r.denominator_normalized.abs(), y=r.numerator_norm, mode="markers",
                    name=f"mixed keys, {'collapse' if collapsed else 'normal'} · {CLASS_LABELS[cls]}",
                    marker=dict(symbol=sym, color=color, size=10), text=r.subject,
                ))
    fig.update_layout(
        title=f"ROME update factors per edit ({model_name}); collapse = perplexity ratio > {threshold:g}",
        xaxis=dict(title="|normalised denominator|  |(C⁻¹k̄)ᵀk| / ‖C⁻¹k̄‖  (k = kᵘ mixed, k = k̄ consistent)", type="log"),
        yaxis=dict(title="numerator norm ||v* − W k||"),
        legend=dict(font=dict(size=10)),
    )
    return fig


def perplexity_before_after(edits: pd.DataFrame, threshold: float, model_name: str) -> go.Figure:
    """Perplexity after / before each edit, one panel per variant, by subject position and text set.

    The reference texts are the same for every edit, so "before" is one number per text set (given
    in the subtitle) and each edit is drawn as its ratio, with the collapse threshold as a line.
    """
    variants = [v for v in VARIANT_LABELS if v in set(edits.variant)]
    fig = make_subplots(rows=1, cols=len(variants), subplot_titles=[VARIANT_LABELS[v] for v in variants],
                        shared_yaxes=True)
    classes = [c for c in CLASS_LABELS if c in set(edits.position_class)]
    sets = (("generic", "generic texts", "#2ca02c"), ("own", "own generations", "#9467bd"))
    for j, v in enumerate(variants, start=1):
        e = edits[edits.variant == v]
        for col, name, color in sets:
            ratio = e[f"ppl_{col}_after"] / e[f"ppl_{col}_before"]
            fig.add_trace(go.Box(
                x=[CLASS_LABELS[c] for c in e.position_class], y=ratio, name=name, legendgroup=name,
                showlegend=j == 1, marker=dict(color=color, size=5), line=dict(color=color), boxpoints="all",
                jitter=0.5, pointpos=0, text=e.subject, hovertemplate="%{text}: ×%{y:.3g}<extra>" + name + "</extra>",
            ), row=1, col=j)
        fig.add_hline(y=1.0, line=dict(dash="dot", color="gray"), row=1, col=j)
        fig.add_hline(y=threshold, line=dict(dash="dash", color="red"), row=1, col=j)
        fig.update_xaxes(categoryorder="array", categoryarray=[CLASS_LABELS[c] for c in classes], row=1, col=j)
        fig.update_yaxes(type="log", row=1, col=j)
    fig.update_yaxes(title_text="perplexity after / before edit (log)", row=1, col=1)
    before = {col: float(edits[f"ppl_{col}_before"].median()) for col, _, _ in sets}
    fig.update_layout(
        boxmode="group",
        title=(f"Perplexity before vs after each edit ({model_name})<br><sup>before: generic texts "
               f"{before['generic']:.3g}, own generations {before['own']:.3g}; gray dotted: no change; red dashed: "
               f"collapse threshold ×{threshold:g}</sup>"),
    )
    return fig


def first_token_projection(points: pd.DataFrame, layer: int, model_name: str, explained: tuple[float, float],
                           norm_ratio: float | None = None) -> go.Figure:
    """2-D PCA of MLP keys: later tokens, first tokens, and the requests' k^u and k̄.

    ``norm_ratio`` (mean first-token key norm / mean later-token key norm) goes into the title, so
    the figure states how the first-token keys differ in this model rather than assuming it.
    """
    styles = {
        "later token (texts)": dict(color="lightgray", size=4, symbol="circle"),
        "first token (texts)": dict(color="#d62728", size=9, symbol="circle"),
        "kᵘ, subject = first token": dict(color="#ff7f0e", size=11, symbol="x"),
        "kᵘ, subject later": dict(color="#1f77b4", size=10, symbol="x"),
        "k̄ (prefixed)": dict(color="#2ca02c", size=9, symbol="diamond"),
    }
    fig = go.Figure()
    for group, st in styles.items():
        p = points[points.group == group]
        if len(p):
            fig.add_trace(go.Scatter(x=p.pc1, y=p.pc2, mode="markers", name=group, marker=st, text=p.label))
    fig.update_layout(
        title=(f"MLP keys at layer {layer} ({model_name}), PCA fitted on text keys"
               + (f"<br><sup>first-token keys have {norm_ratio:.2g}x the norm of later-token keys</sup>"
                  if norm_ratio is not None else "")),
        xaxis_title=f"PC1 ({explained[0]:.0%} of variance)",
        yaxis_title=f"PC2 ({explained[1]:.0%} of variance)",
    )
    return fig


def first_token_layers(table: pd.DataFrame, model_name: str) -> go.Figure:
    """Per layer: first-token distance from the later-token centroid, and the norm ratio."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "distance to later-token centroid (first / later)", "mean norm (first / later)"))
    for kind, color in (("mlp_key", "#d62728"), ("resid_post", "#1f77b4")):
        t = table[table.kind == kind]
        name = "MLP key (mlp.hook_post)" if kind == "mlp_key" else "residual stream (hook_resid_post)"
        fig.add_trace(go.Scatter(x=t.layer, y=t.centroid_distance_z, mode="lines+markers", name=name,
                                 line=dict(color=color), legendgroup=kind), row=1, col=1)
        fig.add_trace(go.Scatter(x=t.layer, y=t.norm_ratio, mode="lines+markers", name=name, showlegend=False,
                                 line=dict(color=color), legendgroup=kind), row=1, col=2)
    for c in (1, 2):
        fig.update_xaxes(title_text="layer", row=1, col=c)
        fig.update_yaxes(title_text="ratio (1 = no anomaly)", type="log", row=1, col=c)
    fig.update_layout(title=f"First-token anomaly by layer ({model_name})")
    return fig


def covariance_convergence(table: pd.DataFrame, layer: int, corpus: str, model_name: str) -> go.Figure:
    """How C and the ROME directions C^-1 k̄ settle as tokens grow (against the largest sample)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "||C(n) − C(N)||_F / ||C(N)||_F", "cosine of C(n)⁻¹ k̄ with C(N)⁻¹ k̄ (requests)"))
    rel = table["mom2_rel_change"] if "mom2_rel_change" in table else table["inverse_rel_change"]  # older results: C⁻¹
    fig.add_trace(go.Scatter(x=table.n_tokens, y=rel, mode="lines+markers", name="relative change of C"), row=1, col=1)
    fig.add_trace(go.Scatter(x=table.n_tokens, y=table.direction_cosine_mean, mode="lines+markers", name="mean cosine"), row=1, col=2)
    fig.add_trace(go.Scatter(x=table.n_tokens, y=table.direction_cosine_min, mode="lines+markers", name="min cosine"), row=1, col=2)
    for c in (1, 2):
        fig.update_xaxes(title_text="tokens in the estimate", type="log", row=1, col=c)
    fig.update_yaxes(title_text="relative change (log)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="cosine", range=[-0.1, 1.05], row=1, col=2)
    fig.update_layout(title=f"Key second moment at layer {layer} ({model_name}; corpus: {corpus})")
    return fig
