"""Plotly figure builders: arrays in, go.Figure out. No model code, no Streamlit.

Every figure has a title, axis titles with units, and hover text with the values.
"""
from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

DIVERGING = "RdBu_r"
SEQUENTIAL = "Viridis"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]  # one per model


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


def png_source(image: np.ndarray) -> str:
    """An RGB image as a PNG data URI for go.Image(source=...). plotly.js shows that as one <image>; given
    z= it paints one canvas rectangle per pixel, which was most of a map's redraw at 256 px (65k per panel).
    Shapes: image (H, W, 3) uint8"""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def fig_attention_overlay(image: np.ndarray, panels: dict[str, np.ndarray], patch_px: int, zmax: float,
                          opacity: float = 0.6, query_xy: tuple[int, int] | None = None, title: str = "",
                          cols: int = 4) -> go.Figure:
    """Attention maps over the image they come from, one subplot per panel, in patch coordinates.

    Every panel carries a transparent scatter (one point per patch) so a click picks the query patch.
    Shapes: image (R, R, 3) uint8; panels {label: (gh, gw)} attention weights
    """
    labels = list(panels)
    cols = min(cols, len(labels))
    rows = -(-len(labels) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=labels, horizontal_spacing=0.03,
                        vertical_spacing=0.08 if rows > 1 else 0.0)
    source = png_source(image)
    for i, label in enumerate(labels):
        r, c = divmod(i, cols)
        a = _np(panels[label]).astype(np.float64)
        gh, gw = a.shape
        axis = i + 1
        # Image pixels placed in patch units: pixel centre (u + 0.5) / patch - 0.5.
        fig.add_trace(go.Image(source=source, x0=0.5 / patch_px - 0.5, dx=1 / patch_px, y0=0.5 / patch_px - 0.5,
                               dy=1 / patch_px, hoverinfo="skip"), row=r + 1, col=c + 1)
        fig.add_trace(go.Heatmap(
            z=a, zmin=0, zmax=zmax, colorscale="Inferno", opacity=opacity, showscale=i == 0,
            colorbar=dict(title="attention<br>weight"),
            hovertemplate=f"x=%{{x}}, y=%{{y}}<br>attention=%{{z:.4f}}<extra>{label}</extra>"), row=r + 1, col=c + 1)
        ys, xs = np.mgrid[0:gh, 0:gw]
        fig.add_trace(go.Scatter(  # the pick layer: hoverinfo "skip" would swallow clicks
            x=xs.ravel(), y=ys.ravel(), mode="markers", showlegend=False, customdata=a.ravel(), name="pick",
            marker=dict(size=max(4, 300 // max(gh, gw) // cols), opacity=0.0, color="white"),
            hovertemplate=f"patch (%{{x}}, %{{y}})<br>attention=%{{customdata:.4f}}<br>click: new query"
                          f"<extra>{label}</extra>"), row=r + 1, col=c + 1)
        if query_xy is not None:
            fig.add_trace(go.Scatter(x=[query_xy[0]], y=[query_xy[1]], mode="markers", showlegend=False,
                                     marker=dict(symbol="x-thin", size=14, line=dict(width=3, color="cyan")),
                                     hovertemplate="query patch (%{x}, %{y})<extra></extra>"), row=r + 1, col=c + 1)
        suffix = "" if axis == 1 else axis
        fig.update_xaxes(range=[-0.5, gw - 0.5], showgrid=False, title_text="x (patch)" if r == rows - 1 else None,
                         constrain="domain", row=r + 1, col=c + 1)
        fig.update_yaxes(range=[gh - 0.5, -0.5], showgrid=False, scaleanchor=f"x{suffix}", constrain="domain",
                         title_text="y (patch)" if c == 0 else None, row=r + 1, col=c + 1)
    fig.update_layout(title=title, height=max(320, 300 * rows) + 80, clickmode="event+select", dragmode=False,
                      margin=dict(l=40, r=20, t=80, b=40))
    return fig


def fig_stat_by_layer(stats: dict[str, np.ndarray], title: str, y_title: str, value_name: str) -> go.Figure:
    """One statistic per layer for several models: each head a faint marker, the head mean a line.

    Shapes: stats {model label: (L, H)}
    """
    fig = go.Figure()
    for i, (label, values) in enumerate(stats.items()):
        v = _np(values).astype(np.float64)
        L, H = v.shape
        color = PALETTE[i % len(PALETTE)]
        layers = np.repeat(np.arange(L), H)
        fig.add_trace(go.Scatter(x=layers, y=v.ravel(), mode="markers", name=f"{label}: heads",
                                 marker=dict(color=color, size=6, opacity=0.35), legendgroup=label,
                                 customdata=np.tile(np.arange(H), L),
                                 hovertemplate=f"{label}<br>layer %{{x}}, head %{{customdata}}<br>"
                                               f"{value_name}=%{{y:.3f}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=np.arange(L), y=v.mean(1), mode="lines+markers", name=f"{label}: mean",
                                 line=dict(color=color, width=3), legendgroup=label,
                                 hovertemplate=f"{label}<br>layer %{{x}}<br>mean {value_name}=%{{y:.3f}}"
                                               f"<extra></extra>"))
    fig.update_xaxes(title_text="layer (0 = first)", dtick=1)
    fig.update_yaxes(title_text=y_title)
    fig.update_layout(title=title, height=400, legend=dict(orientation="h", y=-0.25))
    return fig



def fig_accuracy_vs_resolution(rows: list[dict], train_res: dict[str, int], value: str = "top1",
                               reported: list[dict] | None = None, title: str = "") -> go.Figure:
    """Accuracy against resolution, one line per model (and mode), the training resolution marked.

    rows: sweep rows {model, resolution, mode, top1, top5, n, delta_top1?}; value: "top1" | "top5" |
    "delta_top1". reported: rows {label, resolution, top1} drawn dashed and labelled "reported".
    """
    fig = go.Figure()
    series = {}
    for r in rows:
        series.setdefault((r["model"], r["mode"]), []).append(r)
    modes = {m for _, m in series}
    for i, ((model, mode), points) in enumerate(series.items()):
        points = sorted(points, key=lambda r: r["resolution"])
        color = PALETTE[i % len(PALETTE)]
        name = model if len(modes) == 1 else f"{model} ({mode})"
        ys = [p.get(value) for p in points]
        fig.add_trace(go.Scatter(
            x=[p["resolution"] for p in points], y=ys, mode="lines+markers", name=name,
            line=dict(color=color, width=2.5), customdata=[[p["n"], p["top1"], p["top5"]] for p in points],
            hovertemplate=f"{name}<br>%{{x}} px<br>top-1 %{{customdata[1]:.2f}}%, top-5 %{{customdata[2]:.2f}}%"
                          f"<br>n=%{{customdata[0]}}<extra></extra>"))
        if model in train_res:
            at = next((p for p in points if p["resolution"] == train_res[model]), None)
            if at is not None:
                fig.add_trace(go.Scatter(x=[at["resolution"]], y=[at.get(value)], mode="markers", showlegend=False,
                                         marker=dict(symbol="star", size=16, color=color, line=dict(width=1)),
                                         hovertemplate=f"{name}: training resolution %{{x}} px<extra></extra>"))
    for i, res in enumerate(sorted(set(train_res.values()))):
        fig.add_vline(x=res, line=dict(dash="dot", color="gray"),
                      annotation_text=f"trained at {res} px" if i == 0 else f"{res} px")
    for label in sorted({r["label"] for r in reported or []}):
        pts = sorted((r for r in reported if r["label"] == label), key=lambda r: r["resolution"])
        fig.add_trace(go.Scatter(x=[p["resolution"] for p in pts], y=[p["top1"] for p in pts], name=label,
                                 mode="lines+markers", line=dict(dash="dash", width=1.5), marker=dict(symbol="diamond"),
                                 hovertemplate=f"{label}<br>%{{x}} px: %{{y:.1f}}% (published, not measured here)"
                                               f"<extra></extra>"))
    y_title = {"top1": "top-1 accuracy (%)", "top5": "top-5 accuracy (%)",
               "delta_top1": "top-1 change from the training resolution (points)"}[value]
    fig.update_xaxes(title_text="input resolution (px, square)")
    fig.update_yaxes(title_text=y_title)
    fig.update_layout(title=title or y_title + " against resolution", height=460, hovermode="closest",
                      legend=dict(orientation="h", y=-0.2))
    return fig


def fig_stat_vs_resolution(rows: list[dict], value: str, y_title: str, title: str) -> go.Figure:
    """An attention statistic against resolution: one line per model and layer (darker = deeper).

    rows: {model, resolution, layer, distance, entropy}
    """
    fig = go.Figure()
    names = list(dict.fromkeys(r["model"] for r in rows))
    for i, model in enumerate(names):
        layers = sorted({r["layer"] for r in rows if r["model"] == model})
        for layer in layers:
            pts = sorted((r for r in rows if r["model"] == model and r["layer"] == layer), key=lambda r: r["resolution"])
            fade = 0.35 + 0.65 * (layer + 1) / len(layers)
            fig.add_trace(go.Scatter(
                x=[p["resolution"] for p in pts], y=[p[value] for p in pts], mode="lines+markers",
                name=f"{model} layer {layer}", legendgroup=model, opacity=fade,
                line=dict(color=PALETTE[i % len(PALETTE)]),
                hovertemplate=f"{model}, layer {layer}<br>%{{x}} px<br>{value}=%{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(title_text="input resolution (px, square)")
    fig.update_yaxes(title_text=y_title)
    fig.update_layout(title=title, height=440, legend=dict(orientation="h", y=-0.25))
    return fig


def fig_attribution_overlay(image: np.ndarray, maps: dict[str, np.ndarray], signed: bool, opacity: float,
                            title: str, cols: int = 4) -> go.Figure:
    """Attribution maps over the image, one panel each, one colour scale for all.

    Maps may be per pixel (R, R) or per patch (gh, gw); both are stretched over the image.
    Shapes: image (R, R, 3) uint8; maps {label: (h, w)}
    """
    labels = list(maps)
    cols = min(cols, len(labels))
    rows = -(-len(labels) // cols)
    arrays = [_np(maps[k]).astype(np.float64) for k in labels]
    top = max(float(np.abs(a).max()) for a in arrays) or 1.0
    lo, scale = (-top, DIVERGING) if signed else (0.0, "Inferno")
    R = image.shape[0]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=labels, horizontal_spacing=0.03, vertical_spacing=0.08)
    source = png_source(image)
    for i, (label, a) in enumerate(zip(labels, arrays)):
        r, c = divmod(i, cols)
        h, w = a.shape
        fig.add_trace(go.Image(source=source, hoverinfo="skip"), row=r + 1, col=c + 1)
        unit = "pixel" if h == R else "patch"
        fig.add_trace(go.Heatmap(
            z=a, x0=(R / w - 1) / 2, dx=R / w, y0=(R / h - 1) / 2, dy=R / h, zmin=lo, zmax=top, colorscale=scale,
            opacity=opacity, showscale=i == 0, colorbar=dict(title="attribution"),
            hovertemplate=f"{unit} centre (%{{x:.0f}}, %{{y:.0f}}) px<br>attribution=%{{z:.4g}}<extra>{label}</extra>"),
            row=r + 1, col=c + 1)
        suffix = "" if i == 0 else i + 1
        fig.update_xaxes(range=[-0.5, R - 0.5], showgrid=False, title_text="x (px)", constrain="domain",
                         row=r + 1, col=c + 1)
        fig.update_yaxes(range=[R - 0.5, -0.5], showgrid=False, scaleanchor=f"x{suffix}", constrain="domain",
                         title_text="y (px)" if c == 0 else None, row=r + 1, col=c + 1)
    fig.update_layout(title=title, height=max(340, 320 * rows) + 60, margin=dict(l=40, r=20, t=80, b=40))
    return fig


def fig_canvas_collapse(rows: list[dict], conditions: dict[str, str], resolution: int, chance: float = 10.0) -> go.Figure:
    """Top-1 per model under each change to the canvas view (rope_viz.collapse.collapse_rows), grouped bars.

    Shapes: rows [{model, condition, top1, n}]; conditions {key: label}, in display order
    """
    fig = go.Figure()
    for i, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = {r["condition"]: r for r in rows if r["model"] == model}
        keys = [c for c in conditions if c in mine]
        fig.add_trace(go.Bar(x=[conditions[c] for c in keys], y=[mine[c]["top1"] for c in keys], name=model,
                             marker_color=PALETTE[i % len(PALETTE)], customdata=[mine[c]["n"] for c in keys],
                             hovertemplate=f"{model}<br>%{{x}}<br>top-1 %{{y:.1f}}% of %{{customdata}} scenes<extra></extra>"))
    fig.add_hline(y=chance, line_dash="dot", line_color="gray", annotation_text=f"chance {chance:.0f}%")
    fig.update_yaxes(title_text="top-1 (%)", range=[0, 100])
    fig.update_xaxes(title_text=f"change to the {resolution} px canvas view", tickangle=-20)
    fig.update_layout(title=f"What the {resolution} px canvas collapse depends on (held-out scenes)", barmode="group",
                      height=480, legend=dict(orientation="h", y=-0.45), margin=dict(b=160))
    return fig
