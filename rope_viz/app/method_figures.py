"""Plotly figures for inference-time position methods: arrays in, go.Figure out. No model code."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from rope_viz.app.figures import PALETTE


def fig_method_vectors(trained: np.ndarray, moved: dict[str, np.ndarray], title: str = "",
                       log_magnitude: bool = True) -> go.Figure:
    """Where each method moves one head's frequency vectors w_j: grey = as trained, colour = method.

    A thin line joins each pair's trained and moved vector. With log_magnitude the radius is log10 |w|
    (directions kept), which spreads the slow pairs that crowd the origin.
    Shapes: trained (D/2, 2) rad/patch; moved {method label: (D/2, 2)}
    """
    def place(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        if not log_magnitude:
            return f
        mag = np.hypot(f[:, 0], f[:, 1])
        radius = np.log10(np.maximum(mag, 1e-6)) + 6  # 1e-6 rad/patch at the centre
        angle = np.arctan2(f[:, 1], f[:, 0])
        return np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1)

    def hover(f: np.ndarray) -> list[str]:
        f = np.asarray(f, dtype=np.float64)
        return [f"pair j={j}<br>w = ({x:.5f}, {y:.5f}) rad/patch<br>|w| = {np.hypot(x, y):.5f}"
                for j, (x, y) in enumerate(f)]

    fig = go.Figure()
    base = place(trained)
    fig.add_trace(go.Scatter(x=base[:, 0], y=base[:, 1], mode="markers", name="as trained",
                             marker=dict(color="#9e9e9e", size=9, symbol="circle-open", line=dict(width=2)),
                             text=hover(trained), hoverinfo="text+name"))
    for i, (label, f) in enumerate(moved.items()):
        p = place(f)
        color = PALETTE[i % len(PALETTE)]
        lines_x = np.column_stack([base[:, 0], p[:, 0], np.full(len(p), np.nan)]).ravel()
        lines_y = np.column_stack([base[:, 1], p[:, 1], np.full(len(p), np.nan)]).ravel()
        fig.add_trace(go.Scatter(x=lines_x, y=lines_y, mode="lines", line=dict(color=color, width=1),
                                 hoverinfo="skip", showlegend=False, legendgroup=label))
        fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers", name=label, legendgroup=label,
                                 marker=dict(color=color, size=7), text=hover(f), hoverinfo="text+name"))
    unit = "log10 |w| + 6 along the direction of w" if log_magnitude else "rad/patch"
    fig.update_xaxes(title_text=f"w_x ({unit})", zeroline=True)
    fig.update_yaxes(title_text=f"w_y ({unit})", zeroline=True, scaleanchor="x")
    fig.update_layout(title=title or "Frequency vectors as trained and under each method", height=520,
                      legend_title_text="method")
    return fig
