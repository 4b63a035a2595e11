"""Plotly figures of the Features page: arrays in, go.Figure out. No model code, no Streamlit.

Panels at different resolutions have different patch grids, so they are drawn in image
fractions (0 = left/top edge, 1 = right/bottom edge): a click anywhere reports the same place in
the image whatever panel it lands on.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rope_viz.app.figures import DIVERGING, PALETTE


def _centres(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) / n


def _pick_layer(fig: go.Figure, gh: int, gw: int, values: np.ndarray | None, row: int, col: int, label: str,
                n_cols: int) -> None:
    """A transparent scatter with one point per patch: Streamlit reports clicks on scatter points only."""
    ys, xs = np.mgrid[0:gh, 0:gw]
    custom = np.stack([xs.ravel(), ys.ravel()] + ([values.ravel()] if values is not None else []), axis=-1)
    value_text = "<br>similarity=%{customdata[2]:.3f}" if values is not None else ""
    fig.add_trace(go.Scatter(
        x=_centres(gw)[xs.ravel()], y=_centres(gh)[ys.ravel()], mode="markers", showlegend=False, name="pick",
        customdata=custom, marker=dict(size=max(4, 280 // max(gh, gw) // max(1, n_cols // 2)), opacity=0.0,
                                       color="black"),
        hovertemplate=f"patch (%{{customdata[0]}}, %{{customdata[1]}}){value_text}<br>click: query patch"
                      f"<extra>{label}</extra>"), row=row, col=col)


def fig_feature_panels(rgb: dict[str, np.ndarray], similarity: dict[str, np.ndarray] | None = None,
                       query_uv: tuple[float, float] | None = None, title: str = "") -> go.Figure:
    """PCA colour maps (top row) and, optionally, patch-similarity maps (bottom row), one column per panel.

    Every panel carries a click layer; × marks the query patch. Similarity shares one scale, -1 to 1.
    Shapes: rgb {label: (gh, gw, 3) float in [0, 1]}; similarity {label: (gh, gw)} with the same labels
    """
    labels = list(rgb)
    rows = 2 if similarity else 1
    titles = [f"PCA · {k}" for k in labels] + ([f"similarity · {k}" for k in labels] if similarity else [])
    fig = make_subplots(rows=rows, cols=len(labels), subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.1)
    for c, label in enumerate(labels, start=1):
        image = (np.clip(np.asarray(rgb[label], dtype=np.float64), 0, 1) * 255).round().astype(np.uint8)
        gh, gw = image.shape[:2]
        fig.add_trace(go.Image(z=image, x0=0.5 / gw, dx=1 / gw, y0=0.5 / gh, dy=1 / gh, hoverinfo="skip"),
                      row=1, col=c)
        _pick_layer(fig, gh, gw, None, 1, c, label, len(labels))
        if similarity:
            sim = np.asarray(similarity[label], dtype=np.float64)
            fig.add_trace(go.Heatmap(z=sim, x=_centres(gw), y=_centres(gh), zmin=-1, zmax=1, colorscale=DIVERGING,
                                     showscale=c == len(labels), colorbar=dict(title="cosine<br>similarity", len=0.45,
                                                                               y=0.22),
                                     hoverinfo="skip"), row=2, col=c)
            _pick_layer(fig, gh, gw, sim, 2, c, label, len(labels))
        for r in range(1, rows + 1):
            axis = (r - 1) * len(labels) + c
            if query_uv is not None:
                qx, qy = min(int(query_uv[0] * gw), gw - 1), min(int(query_uv[1] * gh), gh - 1)
                fig.add_trace(go.Scatter(x=[_centres(gw)[qx]], y=[_centres(gh)[qy]], mode="markers", showlegend=False,
                                         marker=dict(symbol="x-thin", size=14, line=dict(width=3, color="black")),
                                         hovertemplate=f"query patch ({qx}, {qy})<extra></extra>"), row=r, col=c)
            fig.update_xaxes(range=[0, 1], showgrid=False, zeroline=False, constrain="domain", row=r, col=c,
                             title_text="x (fraction of width)" if r == rows else None)
            fig.update_yaxes(range=[1, 0], showgrid=False, zeroline=False, constrain="domain", row=r, col=c,
                             scaleanchor=f"x{'' if axis == 1 else axis}", scaleratio=gh / gw,  # the image's aspect
                             title_text="y (fraction of height)" if c == 1 else None)
    fig.update_layout(title=title, height=300 * rows + 100, clickmode="event+select", dragmode=False,
                      margin=dict(l=50, r=20, t=90, b=40))
    return fig


def fig_stability(rows: list[dict], title: str = "") -> go.Figure:
    """Mean cosine similarity to the training-resolution features against resolution, one line per model.

    Shapes: rows [{model, resolution, train_res, similarity, min, n}]
    """
    fig = go.Figure()
    names = list(dict.fromkeys(r["model"] for r in rows))
    for i, name in enumerate(names):
        mine = sorted((r for r in rows if r["model"] == name), key=lambda r: r["resolution"])
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(
            x=[r["resolution"] for r in mine], y=[r["similarity"] for r in mine], mode="lines+markers", name=name,
            line=dict(color=color), customdata=[[r["min"], r["n"]] for r in mine],
            hovertemplate="%{x} px: mean cos %{y:.4f}<br>worst image %{customdata[0]:.4f}, "
                          f"n=%{{customdata[1]}}<extra>{name}</extra>"))
        train = mine[0]["train_res"] if mine else None
        if train is not None:
            fig.add_vline(x=train, line=dict(color=color, dash="dot", width=1))
    fig.update_layout(title=title or "Feature stability: similarity to the training-resolution features",
                      xaxis_title="resolution (px)", yaxis_title="mean cosine similarity", height=420,
                      yaxis=dict(range=[min([0.0] + [r["similarity"] for r in rows]) - 0.02, 1.02]),
                      legend_title_text="model (dotted: its training resolution)")
    return fig
