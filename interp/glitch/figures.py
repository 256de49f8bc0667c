"""Plotly figures of the glitch-token analysis, drawn from its tables (no statistics computed here)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

_KIND_LABEL = {"pattern": "attention pattern", "mlp_gate": "MLP gate", "mlp_data": "MLP data"}


def layer_distance_figure(distances: pd.DataFrame, key_layers: Sequence[int], model_name: str) -> go.Figure:
    """Per-layer glitch-vs-normal Wasserstein distance, one line per feature kind, key layers shaded.

    Args:
        distances: columns ``layer, kind, distance``.
        key_layers: the chosen layers.
        model_name: for the title.
    """
    fig = go.Figure()
    for kind, g in distances.groupby("kind", sort=False):
        g = g.sort_values("layer")
        fig.add_trace(go.Scatter(x=g.layer, y=g.distance, mode="lines+markers", name=_KIND_LABEL.get(kind, kind)))
    for L in key_layers:
        fig.add_vrect(x0=L - 0.5, x1=L + 0.5, fillcolor="orange", opacity=0.15, line_width=0)
    fig.update_layout(
        title=f"Glitch vs normal tokens: per-layer Wasserstein distance ({model_name})",
        xaxis_title="layer (shaded: key layers)", yaxis_title="mean standardised Wasserstein-1 distance", template="plotly_white",
        width=900, height=480, legend_title="feature",
    )
    return fig


def pca_scatter_figure(points: pd.DataFrame, model_name: str) -> go.Figure:
    """Tokens on the first two PCA components of the key-layer features, coloured by ground truth.

    Args:
        points: columns ``pc1, pc2, label`` (``glitch``/``normal``).
        model_name: for the title.
    """
    fig = go.Figure()
    for label, color, size in (("normal", "#1f77b4", 3), ("glitch", "#d62728", 4)):
        g = points[points.label == label]
        fig.add_trace(go.Scattergl(x=g.pc1, y=g.pc2, mode="markers", name=f"{label} ({len(g)})",
                                   marker=dict(color=color, size=size, opacity=0.5)))
    fig.update_layout(title=f"Key-layer activation features, first two PCA components ({model_name})",
                      xaxis_title="PC 1", yaxis_title="PC 2", template="plotly_white", width=800, height=600,
                      legend_title="oracle class")
    return fig


def sample_ratio_figure(sweep: pd.DataFrame, model_name: str) -> go.Figure:
    """Recall (after verification) and SVM precision (before verification) against the labelled share.

    Args:
        sweep: columns ``sample_ratio, recall, precision_svm, f1, cost_ratio``.
        model_name: for the title.
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=sweep.sample_ratio, y=sweep.recall, mode="lines+markers", name="recall (precision 1 after verification)"))
    fig.add_trace(go.Scatter(x=sweep.sample_ratio, y=sweep.precision_svm, mode="lines+markers", name="SVM precision before verification"))
    fig.add_trace(go.Scatter(x=sweep.sample_ratio, y=sweep.f1, mode="lines+markers", name="F1 after verification"))
    fig.add_trace(go.Scatter(x=sweep.sample_ratio, y=sweep.cost_ratio, mode="lines+markers", name="oracle calls / exhaustive",
                             line=dict(dash="dot", color="grey")), secondary_y=True)
    fig.update_xaxes(title_text="share of candidate tokens labelled by the oracle", type="log")
    fig.update_yaxes(title_text="recall / precision / F1", range=[0, 1.05], secondary_y=False)
    fig.update_yaxes(title_text="oracle calls relative to exhaustive search", secondary_y=True, rangemode="tozero")
    fig.update_layout(title=f"Detection quality vs labelled sample share ({model_name})", template="plotly_white",
                      width=950, height=500, legend=dict(x=0.01, y=-0.25, orientation="h"))
    return fig


def method_time_figure(methods: pd.DataFrame, model_name: str) -> go.Figure:
    """Wall time of each search method, split into its stages, with its recall in the label.

    Args:
        methods: columns ``method, stage, seconds, recall``.
        model_name: for the title.
    """
    fig = go.Figure()
    order = list(dict.fromkeys(methods.method))
    labels = {m: f"{m}<br>recall {methods[methods.method == m].recall.iloc[0]:.2f}" for m in order}
    for stage, g in methods.groupby("stage", sort=False):
        fig.add_trace(go.Bar(x=[labels[m] for m in g.method], y=g.seconds, name=stage))
    fig.update_layout(barmode="stack", title=f"Time to find glitch tokens, per method ({model_name})",
                      xaxis_title="method", yaxis_title="wall time (s)", template="plotly_white", width=900, height=520,
                      legend_title="stage")
    return fig


def recall_cost_figure(curve: pd.DataFrame, recall_target: float, cost_floor: float, model_name: str) -> go.Figure:
    """Recall against wall time (relative to exhaustive search) as each detector's top-scored tokens are verified.

    Args:
        curve: columns ``method, recall, cost_ratio``.
        recall_target: the target recall (horizontal line).
        cost_floor: the least time any verify-everything method needs for the target recall
            (target recall x glitch prevalence; dotted line).
        model_name: for the title.
    """
    fig = go.Figure()
    for method, g in curve.groupby("method", sort=False):
        dash = "dot" if "random" in method else None
        fig.add_trace(go.Scatter(x=g.cost_ratio, y=g.recall, mode="lines", name=method, line=dict(dash=dash)))
    fig.add_hline(y=recall_target, line=dict(color="grey", dash="dash"), annotation_text=f"target recall {recall_target:g}")
    fig.add_vline(x=cost_floor, line=dict(color="firebrick", dash="dot"), annotation_text=f"floor {cost_floor:.3f}x",
                  annotation_position="top left")
    fig.update_layout(title=f"Recall vs time when verifying each detector's top-scored tokens ({model_name})",
                      xaxis_title="wall time / exhaustive oracle time", yaxis_title="recall (precision 1 after verification)",
                      template="plotly_white", width=950, height=560, xaxis=dict(range=[0, 1]), yaxis=dict(range=[0, 1.02]),
                      legend=dict(x=0.55, y=0.1))
    return fig
