"""Plotly figure builders: arrays in, go.Figure out. No model code, no Streamlit.

Every figure has a title, axis titles with units, and hover text with the values.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

DIVERGING = "RdBu_r"
SEQUENTIAL = "Viridis"


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _patch_axes(fig: go.Figure, h: int, w: int, col: int) -> None:
    """Image-like axes for subplot `col`: x = patch column rightwards, y = patch row downwards, square cells."""
    fig.update_xaxes(title_text="x (patch column)", range=[-0.5, w - 0.5], constrain="domain", row=1, col=col)
    fig.update_yaxes(title_text="y (patch row)", range=[h - 0.5, -0.5], constrain="domain", row=1, col=col,
                     scaleanchor=f"x{'' if col == 1 else col}")


def fig_freq_vectors(panels: dict[str, np.ndarray], log_magnitude: bool = False, title: str = "") -> go.Figure:
    """Frequency vectors w_j of one head per panel, in the (w_x, w_y) plane.

    Each pair j is a point (and its mirror -w_j: a rotation by -angle is the same frequency).
    With log_magnitude the plane is polar with a logarithmic radius, which spreads the many
    small frequencies that crowd the origin.
    Shapes: panels {label: (D/2, 2)}
    """
    labels = list(panels)
    if log_magnitude:
        fig = make_subplots(rows=1, cols=len(labels), subplot_titles=labels,
                            specs=[[{"type": "polar"}] * len(labels)])
    else:
        fig = make_subplots(rows=1, cols=len(labels), subplot_titles=labels, horizontal_spacing=0.12)
    for i, label in enumerate(labels, start=1):
        f = _np(panels[label]).astype(np.float64)
        j = np.arange(len(f))
        mag = np.hypot(f[:, 0], f[:, 1])
        ang = np.degrees(np.arctan2(f[:, 1], f[:, 0]))
        hover = [f"pair j={k}<br>w = ({x:.4f}, {y:.4f}) rad/patch<br>|w| = {m:.4f} rad/patch<br>direction {a:.1f}°"
                 for k, x, y, m, a in zip(j, f[:, 0], f[:, 1], mag, ang)]
        marker = dict(color=j, colorscale=SEQUENTIAL, size=8, showscale=i == len(labels),
                      colorbar=dict(title="pair j"))
        if log_magnitude:
            r = np.maximum(mag, 1e-6)
            fig.add_trace(go.Scatterpolar(r=np.r_[r, r], theta=np.r_[ang, ang + 180], mode="markers",
                                          marker={**marker, "color": np.r_[j, j]}, text=hover + hover,
                                          hoverinfo="text", showlegend=False), row=1, col=i)
        else:
            fig.add_trace(go.Scatter(x=np.r_[f[:, 0], -f[:, 0]], y=np.r_[f[:, 1], -f[:, 1]], mode="markers",
                                     marker={**marker, "color": np.r_[j, j]}, text=hover + hover,
                                     hoverinfo="text", showlegend=False), row=1, col=i)
            lim = max(1e-3, float(mag.max()) * 1.15)
            fig.update_xaxes(title_text="w_x (rad/patch)", range=[-lim, lim], zeroline=True, row=1, col=i)
            fig.update_yaxes(title_text="w_y (rad/patch)", range=[-lim, lim], zeroline=True, row=1, col=i,
                             scaleanchor=f"x{'' if i == 1 else i}")
    if log_magnitude:
        fig.update_polars(radialaxis=dict(type="log", title_text="|w| (rad/patch, log)"),
                          angularaxis=dict(direction="counterclockwise", rotation=0))
    fig.update_layout(title=title or "Frequency vectors w_j (each shown with its mirror -w_j)", height=430)
    return fig


def fig_heatmaps(panels: dict[str, np.ndarray], title: str, colorbar: str, zmin: float | None = None,
                 zmax: float | None = None, colorscale: str = DIVERGING, query_xy: tuple[int, int] | None = None,
                 clickable: bool = False, value_name: str = "value") -> go.Figure:
    """Side-by-side patch-grid heatmaps sharing one colour scale, with an optional query marker.

    With `clickable`, a transparent scatter with one point per patch is added on top: Streamlit
    reports clicks on scatter points (not on heatmap cells), so this is how a user picks a patch.
    Shapes: panels {label: (h, w)}
    """
    labels = list(panels)
    arrays = [_np(panels[k]).astype(np.float64) for k in labels]
    lo = zmin if zmin is not None else min(float(a.min()) for a in arrays)
    hi = zmax if zmax is not None else max(float(a.max()) for a in arrays)
    fig = make_subplots(rows=1, cols=len(labels), subplot_titles=labels, horizontal_spacing=0.08)
    for i, (label, a) in enumerate(zip(labels, arrays), start=1):
        h, w = a.shape
        fig.add_trace(go.Heatmap(
            z=a, zmin=lo, zmax=hi, colorscale=colorscale, showscale=i == len(labels),
            colorbar=dict(title=colorbar), name=label,
            hovertemplate=f"x=%{{x}}, y=%{{y}}<br>{value_name}=%{{z:.4f}}<extra>{label}</extra>"), row=1, col=i)
        if clickable:
            ys, xs = np.mgrid[0:h, 0:w]
            # hoverinfo "skip" would also swallow clicks, so the pick layer carries the hover text.
            fig.add_trace(go.Scatter(
                x=xs.ravel(), y=ys.ravel(), mode="markers", showlegend=False, customdata=a.ravel(),
                marker=dict(size=max(4, 360 // max(h, w)), opacity=0.0, color="black"), name="pick",
                hovertemplate=f"x=%{{x}}, y=%{{y}}<br>{value_name}=%{{customdata:.4f}}<br>click to pick"
                              f"<extra>{label}</extra>"), row=1, col=i)
        if query_xy is not None:
            fig.add_trace(go.Scatter(x=[query_xy[0]], y=[query_xy[1]], mode="markers", showlegend=False,
                                     marker=dict(symbol="x-thin", size=14, line=dict(width=3, color="black")),
                                     hovertemplate="query patch (%{x}, %{y})<extra></extra>"), row=1, col=i)
        _patch_axes(fig, h, w, col=i)
    fig.update_layout(title=title, height=440, clickmode="event+select", dragmode=False)
    return fig


def fig_spectrum(panels: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> go.Figure:
    """Power spectra of similarity kernels in dB, frequency axes in rad/patch.

    Shapes: panels {label: (omega (S,), power (S, S) rows = w_y)}
    """
    labels = list(panels)
    fig = make_subplots(rows=1, cols=len(labels), subplot_titles=labels, horizontal_spacing=0.1)
    for i, label in enumerate(labels, start=1):
        omega, power = (_np(x) for x in panels[label])
        db = 10 * np.log10(np.maximum(power, 1e-6))
        fig.add_trace(go.Heatmap(
            x=omega, y=omega, z=db, zmin=-60, zmax=0, colorscale=SEQUENTIAL, showscale=i == len(labels),
            colorbar=dict(title="power (dB)"),
            hovertemplate="w_x=%{x:.3f} rad/patch<br>w_y=%{y:.3f} rad/patch<br>%{z:.1f} dB<extra></extra>"),
            row=1, col=i)
        fig.update_xaxes(title_text="w_x (rad/patch)", row=1, col=i)
        fig.update_yaxes(title_text="w_y (rad/patch)", scaleanchor=f"x{'' if i == 1 else i}", row=1, col=i)
    fig.update_layout(title=title or "Spectrum of the similarity kernel (peaks = frequencies attention can use)",
                      height=440)
    return fig


def fig_layer_head_heatmap(values: np.ndarray, title: str, colorbar: str, colorscale: str = SEQUENTIAL,
                           value_name: str = "value") -> go.Figure:
    """A (layers x heads) summary as a heatmap. Shapes: values (L, H)"""
    v = _np(values)
    L, H = v.shape
    fig = go.Figure(go.Heatmap(
        z=v, x=np.arange(H), y=np.arange(L), colorscale=colorscale, colorbar=dict(title=colorbar),
        hovertemplate=f"layer %{{y}}, head %{{x}}<br>{value_name}=%{{z:.4f}}<extra></extra>"))
    fig.update_xaxes(title_text="head", dtick=1)
    fig.update_yaxes(title_text="layer (0 = first)", dtick=1, autorange="reversed")
    fig.update_layout(title=title, height=380)
    return fig


def fig_freqs_by_layer(freqs: np.ndarray, head: int | None = None) -> go.Figure:
    """All frequency vectors of a model in the (w_x, w_y) plane, coloured by layer.

    Shapes: freqs (L, H, D/2, 2); head None = all heads
    """
    f = _np(freqs).astype(np.float64)
    L = f.shape[0]
    fig = go.Figure()
    for layer in range(L):
        pts = f[layer] if head is None else f[layer, head:head + 1]  # (h, D/2, 2)
        pts = pts.reshape(-1, 2)
        fig.add_trace(go.Scatter(
            x=pts[:, 0], y=pts[:, 1], mode="markers", name=f"layer {layer}",
            marker=dict(size=6, color=layer, colorscale=SEQUENTIAL, cmin=0, cmax=max(1, L - 1)),
            hovertemplate=f"layer {layer}<br>w=(%{{x:.4f}}, %{{y:.4f}}) rad/patch<extra></extra>"))
    lim = max(1e-3, float(np.abs(f).max()) * 1.1)
    fig.update_xaxes(title_text="w_x (rad/patch)", range=[-lim, lim])
    fig.update_yaxes(title_text="w_y (rad/patch)", range=[-lim, lim], scaleanchor="x")
    which = "all heads" if head is None else f"head {head}"
    fig.update_layout(title=f"Learned frequency vectors across layers ({which})", height=480,
                      legend_title_text="layer")
    return fig
