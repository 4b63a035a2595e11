"""Plotly figures for the Anatomy page and the Attention page's head grid: arrays in, go.Figure out.
No model code, no Streamlit. Every figure has a title, axis titles with units, and hover text."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from rope_viz.app.figures import DIVERGING, PALETTE, SEQUENTIAL

NO_POSITION_TURNS = 0.1  # anatomy.NO_POSITION_TURNS, drawn as a line (figures import no model code)

# Log axes labelled with full values at 1, 2, 5 x 10^k (Plotly's own minor labels print 0.2 as "2").
_TICKS = [m * 10.0 ** e for e in range(-6, 4) for m in (1, 2, 5)]
LOG_TICKS = dict(tickvals=_TICKS, ticktext=[f"{v:g}" for v in _TICKS])

def _pair_labels(rows: list[dict]) -> list[str]:
    axial = all(r["axis"] != "x and y" for r in rows)
    return [f"j={r['pair']} ({r['axis']})" if axial else f"j={r['pair']}" for r in rows]


def fig_logit_pairs(rows: list[dict], title: str) -> go.Figure:
    """One attention logit as one bar per feature pair (the model's terms), with the two counterfactuals as
    markers: the same pair at offset 0 ("same position") and with the content angle set to 0 ("content removed").

    rows: anatomy_views.logit_pairs_view's rows, already in display order
    """
    labels = _pair_labels(rows)
    hover = [f"pair j={r['pair']} (axis {r['axis']})<br>w = ({r['w_x (rad/patch)']:.4f}, {r['w_y (rad/patch)']:.4f}) "
             f"rad/patch, |w| = {r['|w| (rad/patch)']:.4f}<br>scale |q_j||k_j| = {r['scale |q_j||k_j| (logit)']:.4f}<br>"
             f"content angle {np.degrees(r['content angle (rad)']):.1f}°, position angle "
             f"{np.degrees(r['position angle (rad)']):.1f}°" for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=[r["term (logit)"] for r in rows], name="the model's term", hovertext=hover,
                         marker_color=PALETTE[0],
                         hovertemplate="%{hovertext}<br><b>term %{y:.4f}</b><extra></extra>"))
    for i, (key, name, symbol) in enumerate((("same position (logit)", "same position (offset 0)", "diamond"),
                                             ("content removed (logit)", "content removed (content angle 0)",
                                              "circle-open"))):
        fig.add_trace(go.Scatter(x=labels, y=[r[key] for r in rows], mode="markers", name=name, hovertext=hover,
                                 marker=dict(symbol=symbol, size=10, color=PALETTE[1 + i], line=dict(width=2)),
                                 hovertemplate=f"%{{hovertext}}<br>{name}: %{{y:.4f}}<extra></extra>"))
    axes = [r["axis"] for r in rows]
    for i in range(1, len(axes)):  # a dotted line between the x and y groups of an axial head
        if axes[i] != axes[i - 1]:
            fig.add_vline(x=i - 0.5, line=dict(dash="dot", color="gray"))
    grouped = "x pairs, then y pairs; " if all(a != "x and y" for a in axes) else ""
    fig.add_hline(y=0, line=dict(color="black", width=1))
    fig.update_xaxes(title_text=f"feature pair j ({grouped}fastest |w_j| first)", tickangle=-45)
    fig.update_yaxes(title_text="contribution to the logit (scale · q_j · k_j, logit units)")
    fig.update_layout(title=title, height=460, legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                      margin=dict(t=110), barmode="overlay")
    return fig


def fig_usage(usage: np.ndarray, magnitude: np.ndarray, layer: int, head: int) -> go.Figure:
    """Frequency usage of one head against |w_j|, one series per layer (the chosen layer drawn bold).

    Pairs that do not rotate (|w| = 0) sit at the left edge of the log axis. Shapes: usage, magnitude (L, D/2)
    """
    mag = np.asarray(magnitude, dtype=np.float64)
    floor = 0.5 * float(mag[mag > 0].min()) if (mag > 0).any() else 1e-4
    fig = go.Figure()
    for i in range(len(usage)):
        order = np.argsort(mag[i])
        x = np.maximum(mag[i][order], floor)
        chosen = i == layer
        fig.add_trace(go.Scatter(
            x=x, y=usage[i][order], mode="lines+markers", name=f"layer {i}", customdata=np.c_[order, mag[i][order]],
            line=dict(width=3 if chosen else 1, color=PALETTE[0] if chosen else None),
            marker=dict(size=9 if chosen else 5), opacity=1.0 if chosen else 0.45,
            hovertemplate=f"layer {i}, pair j=%{{customdata[0]}}<br>|w| = %{{customdata[1]:.4f}} rad/patch<br>"
                          "usage %{y:.4f}<extra></extra>"))
    fig.update_xaxes(title_text="|w_j| (rad/patch, log; w = 0 at the left edge)", type="log", **LOG_TICKS)
    fig.update_yaxes(title_text="usage: scale · mean |q_j| · mean |k_j| (logit units)")
    fig.update_layout(title=f"Which frequencies head {head} uses, every layer (layer {layer} bold)", height=430,
                      legend=dict(orientation="h", y=-0.25))
    return fig


def fig_head_kinds(share: np.ndarray, kinds: list[list[str]], positional: float, semantic: float) -> go.Figure:
    """Each head's usage share on its faster half of pairs, labelled with its kind. Shapes: share (L, H)"""
    L, H = share.shape
    letters = [[k[0].upper() for k in row] for row in kinds]
    fig = go.Figure(go.Heatmap(
        z=share, x=np.arange(H), y=np.arange(L), zmin=0, zmax=1, colorscale=DIVERGING, text=letters,
        texttemplate="%{text}", customdata=kinds,
        colorbar=dict(title="share on<br>faster half"),
        hovertemplate="layer %{y}, head %{x}<br>share %{z:.3f}: %{customdata}<extra></extra>"))
    fig.update_xaxes(title_text="head", dtick=1)
    fig.update_yaxes(title_text="layer (0 = first)", dtick=1, autorange="reversed")
    fig.update_layout(title=f"Head kinds: P positional (≥ {positional:.0%}), S semantic (≤ {semantic:.0%}), M mixed",
                      height=430)
    return fig


def fig_coverage(rows: list[dict], grid: tuple[int, int], train_grid: tuple[int, int], title: str) -> go.Figure:
    """Turns each pair sweeps across the image at the training grid and at this grid (log), fastest first,
    with the no-position line; aliasing pairs and the RIFLEx pair marked."""
    rows = sorted(rows, key=lambda r: -r["|w| (rad/patch)"])
    labels = [f"j={r['pair']}" for r in rows]
    floor = 1e-3
    fig = go.Figure()
    for key, name, color in (("turns at training grid", f"training grid {train_grid[1]} x {train_grid[0]}", "#9e9e9e"),
                             ("turns at this grid", f"this grid {grid[1]} x {grid[0]}", PALETTE[0])):
        fig.add_trace(go.Scatter(
            x=labels, y=[max(r[key], floor) for r in rows], mode="lines+markers", name=name,
            line=dict(color=color), customdata=[[r["|w| (rad/patch)"], r["period (patches)"], r[key]] for r in rows],
            hovertemplate="%{x}<br>|w| = %{customdata[0]:.4f} rad/patch, period %{customdata[1]:.1f} patches"
                          "<br>%{customdata[2]:.3f} turns<extra>" + name + "</extra>"))
    for flag, symbol, color in (("aliasing", "x", "#d62728"), ("RIFLEx", "star", "#ff7f0e"),
                                ("no position", "circle-open", "#7f7f7f")):
        marked = [r for r in rows if r[flag]]
        if marked:
            fig.add_trace(go.Scatter(
                x=[f"j={r['pair']}" for r in marked], y=[max(r["turns at this grid"], floor) for r in marked],
                mode="markers", name=flag, marker=dict(symbol=symbol, size=15, color=color, line=dict(width=2)),
                hovertemplate="%{x}: " + flag + "<extra></extra>"))
    for turns, name, dash in ((NO_POSITION_TURNS, f"{NO_POSITION_TURNS} turn: less carries no position", "dot"),
                              (1.0, "1 turn", "dash")):  # as traces: shapes on a log axis take log10 values
        fig.add_trace(go.Scatter(x=[labels[0], labels[-1]], y=[turns, turns], mode="lines", name=name,
                                 line=dict(dash=dash, color="gray", width=1), hoverinfo="skip"))
    fig.update_xaxes(title_text="feature pair j (fastest |w_j| first)", tickangle=-45)
    fig.update_yaxes(title_text="turns across the image (|w_x| gw + |w_y| gh) / 2π, log", type="log", **LOG_TICKS)
    fig.update_layout(title=title, height=430, legend=dict(orientation="h", y=-0.3))
    return fig


def fig_norms_by_layer(norms: np.ndarray, labels: list[str]) -> go.Figure:
    """Output-token norms per layer: the patches' median and largest, and every prefix token.

    Shapes: norms (L, N) prefix tokens first; labels: the prefix tokens' names
    """
    L = len(norms)
    patches = norms[:, len(labels):]
    layers = np.arange(L)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=layers, y=np.median(patches, axis=1), mode="lines+markers", name="patches: median",
                             line=dict(color="#9e9e9e", width=3),
                             hovertemplate="layer %{x}: median patch norm %{y:.2f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=layers, y=patches.max(axis=1), mode="lines+markers", name="patches: largest",
                             line=dict(color="#9e9e9e", dash="dot"),
                             hovertemplate="layer %{x}: largest patch norm %{y:.2f}<extra></extra>"))
    for i, label in enumerate(labels):
        fig.add_trace(go.Scatter(x=layers, y=norms[:, i], mode="lines+markers", name=label,
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2),
                                 hovertemplate=f"layer %{{x}}: {label} norm %{{y:.2f}}<extra></extra>"))
    fig.update_xaxes(title_text="layer (output of the block, 0 = first)", dtick=1)
    fig.update_yaxes(title_text="token norm ‖x‖ (L2)")
    fig.update_layout(title="Token norms through the layers", height=400, legend=dict(orientation="h", y=-0.25))
    return fig


def fig_head_grid(maps: np.ndarray, query_xy: tuple[int, int], selected: tuple[int, int], title: str) -> go.Figure:
    """Every layer's and head's attention map of one query as one L x H grid of small maps (BertViz's
    model view), each map scaled to its own largest weight; × the query, a frame around `selected`.

    One heatmap holds all maps (a one-patch gap between them) so the figure stays light for 24 x 16 heads;
    one transparent point per map (trace "heads", customdata [layer, head, ...]) takes the clicks.
    Shapes: maps (L, H, gh, gw) attention weights
    """
    L, H, gh, gw = maps.shape
    z = np.full((L * (gh + 1) - 1, H * (gw + 1) - 1), np.nan)
    picks = []
    for layer in range(L):
        for head in range(H):
            a = maps[layer, head].astype(np.float64)
            top = float(a.max()) or 1.0
            y0, x0 = layer * (gh + 1), head * (gw + 1)
            z[y0:y0 + gh, x0:x0 + gw] = a / top
            ty, tx = np.unravel_index(int(a.argmax()), a.shape)
            picks.append((x0 + (gw - 1) / 2, y0 + (gh - 1) / 2, layer, head, top, int(tx), int(ty)))
    tile_px = max(36, min(110, 880 // L))
    picks = np.array(picks)
    fig = go.Figure(go.Heatmap(z=z, zmin=0, zmax=1, colorscale=SEQUENTIAL, hoverinfo="skip",
                               colorbar=dict(title="weight /<br>map's max")))
    fig.add_trace(go.Scatter(  # the pick layer: the nearest map centre wins a click anywhere on a map
        x=picks[:, 0], y=picks[:, 1], mode="markers", name="heads", showlegend=False,
        customdata=picks[:, 2:].tolist(),  # plain lists: a typed array's rows reach Streamlit as {"0": ..} objects
        marker=dict(size=1.5 * tile_px, opacity=0.0, color="white", symbol="square"),
        hovertemplate="layer %{customdata[0]}, head %{customdata[1]}<br>largest weight %{customdata[2]:.3f} at "
                      "patch (%{customdata[3]}, %{customdata[4]})<br>click: show this head above<extra></extra>"))
    qx, qy = query_xy
    fig.add_trace(go.Scatter(
        x=[h * (gw + 1) + qx for _ in range(L) for h in range(H)], y=[la * (gh + 1) + qy for la in range(L) for _ in range(H)],
        mode="markers", showlegend=False, hoverinfo="skip",
        marker=dict(symbol="x-thin", size=max(5, tile_px // 12), line=dict(width=2, color="cyan"))))
    layer, head = selected
    if 0 <= layer < L and 0 <= head < H:
        fig.add_shape(type="rect", x0=head * (gw + 1) - 0.5, x1=head * (gw + 1) + gw - 0.5, y0=layer * (gh + 1) - 0.5,
                      y1=layer * (gh + 1) + gh - 0.5, line=dict(color="#ff7f0e", width=3))
    fig.update_xaxes(title_text="head (in each map: x = patch column)", tickvals=[h * (gw + 1) + (gw - 1) / 2 for h in range(H)],
                     ticktext=[f"head {h}" for h in range(H)], range=[-0.5, H * (gw + 1) - 1.5], showgrid=False,
                     zeroline=False, constrain="domain")
    fig.update_yaxes(title_text="layer (in each map: y = patch row)", tickvals=[la * (gh + 1) + (gh - 1) / 2 for la in range(L)],
                     ticktext=[f"layer {la}" for la in range(L)], range=[L * (gh + 1) - 1.5, -0.5], showgrid=False,
                     zeroline=False, scaleanchor="x", constrain="domain")
    fig.update_layout(title=title, height=L * tile_px + 130, clickmode="event+select", dragmode=False,
                      hovermode="closest", margin=dict(l=90, r=20, t=60, b=50))
    return fig
