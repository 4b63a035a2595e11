"""The lesson "RoPE in 2D, step by step": one computation and one figure per step.

Every number a step shows comes from rope_viz.rope (the same functions the models' parity tests
check against timm), or, for the last step, from the bundled models' measured model cards.
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from rope_viz import rope
from rope_viz.app import figures

HEAD_DIM = 32  # 16 pairs: few enough to follow one by one
AXIAL_THETA, MIXED_THETA = 100.0, 10.0  # naver's RoPE-Axial base and RoPE-Mixed initialisation
GRID = 14  # patches per side, a 224 px image at 16 px patches
KINDS = ("axial", "mixed")


def lesson_freqs(kind: str, direction_deg: float = 30.0) -> np.ndarray:
    """One head's frequency vectors: axial (theta 100), or mixed with its first direction at `direction_deg`.

    Shapes: -> (D/2, 2) rad/patch
    """
    if kind == "axial":
        return rope.axial_freqs(HEAD_DIM, AXIAL_THETA).numpy()
    if kind != "mixed":
        raise ValueError(f"Unknown kind {kind!r}; valid: {', '.join(KINDS)}.")
    axial = rope.axial_freqs(HEAD_DIM, MIXED_THETA)  # magnitudes along x, then along y (a + 90°)
    a = math.radians(direction_deg)
    turn = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # rotate both axes by a
    return (axial @ turn).numpy()


# ---------------------------------------------------------------- step 1: one pair turns


def pair_turn(freq: np.ndarray, pair: np.ndarray, x: int, y: int, grid: int = GRID) -> dict:
    """One feature pair rotated by RoPE at patch (x, y), and the angle w . p at every patch of the grid.

    Shapes: freq (2,), pair (2,) -> {angle: float, rotated: (2,), angles: (grid, grid)}
    """
    w = torch.as_tensor(freq, dtype=torch.float32)[None]  # (1, 2): one pair
    positions = rope.grid_positions(grid, grid)  # (P, 2)
    all_angles = rope.angles(w, positions)[:, 0]  # (P,)
    angle = rope.angles(w, torch.tensor([[float(x), float(y)]]))  # (1, 1)
    rotated = rope.apply_rope(torch.as_tensor(pair, dtype=torch.float32)[None], angle)[0]  # (2,)
    return {"angle": float(angle), "rotated": rotated.numpy(), "angles": all_angles.reshape(grid, grid).numpy()}


def fig_pair_turn(turn: dict, pair: np.ndarray, x: int, y: int) -> go.Figure:
    """Left: cos(w . p) over the grid, the patch marked. Right: the pair before (p = 0) and after rotation.

    Shapes: turn from pair_turn; pair (2,)
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=["cos(w · p): how far the pair has turned at each patch",
                                                        f"the pair at patch ({x}, {y}): turned by {turn['angle']:.2f} rad"],
                        horizontal_spacing=0.2)
    fig.add_trace(go.Heatmap(z=np.cos(turn["angles"]), zmin=-1, zmax=1, colorscale=figures.DIVERGING,
                             colorbar=dict(title="cos(angle)", x=0.41),
                             hovertemplate="x=%{x}, y=%{y}<br>cos(w·p)=%{z:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", showlegend=False, name="patch",
                             marker=dict(symbol="x-thin", size=16, line=dict(width=3, color="black"))), row=1, col=1)
    grid = turn["angles"].shape[0]
    fig.update_xaxes(title_text="x (patch column)", range=[-0.5, grid - 0.5], constrain="domain", row=1, col=1)
    fig.update_yaxes(title_text="y (patch row)", range=[grid - 0.5, -0.5], scaleanchor="x", constrain="domain",
                     row=1, col=1)
    t = np.linspace(0, 2 * np.pi, 121)
    r = float(np.hypot(*pair))
    fig.add_trace(go.Scatter(x=r * np.cos(t), y=r * np.sin(t), mode="lines", line=dict(color="lightgray"),
                             showlegend=False, hoverinfo="skip"), row=1, col=2)
    for vec, name, style in ((pair, "at p = (0, 0)", "dash"), (turn["rotated"], f"at p = ({x}, {y})", "solid")):
        fig.add_trace(go.Scatter(x=[0, vec[0]], y=[0, vec[1]], mode="lines+markers", name=name,
                                 line=dict(width=3, dash=style)), row=1, col=2)
    lim = 1.2 * r
    fig.update_xaxes(title_text="feature 2j", range=[-lim, lim], row=1, col=2)
    fig.update_yaxes(title_text="feature 2j+1", range=[-lim, lim], scaleanchor="x2", row=1, col=2)
    fig.update_layout(height=420, legend=dict(orientation="h", y=-0.2, x=0.6))
    return fig


# ---------------------------------------------------------------- step 2: only the offset counts


def offset_logits(freqs: np.ndarray, query_xy, key_xy, shift_xy, seed: int = 0) -> dict:
    """q . k with RoPE, and with an absolute embedding added instead, before and after moving both patches.

    The additive embedding uses the same waves (cos, sin of w . p) so the two differ only in how
    position enters: rotated in (RoPE) or added on (APE-like). Shapes: freqs (D/2, 2) -> {name: float}
    """
    f = torch.as_tensor(freqs, dtype=torch.float32)
    D = 2 * f.shape[0]
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, D, generator=g)  # one query and one key feature vector

    def positions(shift):
        return torch.tensor([[float(query_xy[0] + shift[0]), float(query_xy[1] + shift[1])],
                             [float(key_xy[0] + shift[0]), float(key_xy[1] + shift[1])]])

    def rope_logit(shift):
        a = rope.angles(f, positions(shift))  # (2, D/2)
        qr, kr = rope.apply_rope(torch.stack([q, k]), a)  # (2, D)
        return float(qr @ kr)

    def added_logit(shift):
        a = rope.angles(f, positions(shift))  # (2, D/2)
        waves = torch.stack([torch.cos(a), torch.sin(a)], -1).flatten(-2)  # (2, D)
        return float((q + waves[0]) @ (k + waves[1]))

    zero = (0, 0)
    return {"rope_before": rope_logit(zero), "rope_after": rope_logit(shift_xy),
            "added_before": added_logit(zero), "added_after": added_logit(shift_xy)}


def fig_offset(logits: dict, query_xy, key_xy, shift_xy, grid: int = GRID) -> go.Figure:
    """Left: the two patches and where they move. Right: the logits before and after the move.

    Shapes: logits from offset_logits; query_xy, key_xy, shift_xy (x, y) in patches
    """
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.12,
                        subplot_titles=["query (q) and key (k) patches, moved together",
                                        "attention logit q · k before and after the move"])
    for (px, py), name, colour in ((query_xy, "q", figures.PALETTE[0]), (key_xy, "k", figures.PALETTE[1])):
        nx, ny = px + shift_xy[0], py + shift_xy[1]
        fig.add_trace(go.Scatter(x=[px, nx], y=[py, ny], mode="lines+markers+text", text=[name, name + "'"],
                                 textposition="top center", marker=dict(size=12, color=colour),
                                 line=dict(dash="dot", color=colour), name=f"{name}: ({px}, {py}) -> ({nx}, {ny})"),
                      row=1, col=1)
    fig.update_xaxes(title_text="x (patch)", range=[-0.5, grid - 0.5], row=1, col=1)
    fig.update_yaxes(title_text="y (patch)", range=[grid - 0.5, -0.5], scaleanchor="x", row=1, col=1)
    for kind, label, colour in (("rope", "RoPE (rotated)", figures.PALETTE[2]),
                                ("added", "absolute (added)", figures.PALETTE[3])):
        fig.add_trace(go.Bar(x=["before", "after"], y=[logits[f"{kind}_before"], logits[f"{kind}_after"]],
                             name=label, marker_color=colour, text=[f"{logits[f'{kind}_before']:.3f}",
                                                                    f"{logits[f'{kind}_after']:.3f}"],
                             textposition="outside"), row=1, col=2)
    fig.update_yaxes(title_text="logit q · k", row=1, col=2)
    fig.update_layout(height=420, barmode="group", legend=dict(orientation="h", y=-0.2))
    return fig


# ---------------------------------------------------------------- step 3: frequencies add up


def partial_kernels(freqs: np.ndarray, pairs: int, query_xy, grid: int = GRID) -> dict[str, np.ndarray]:
    """The newest pair's wave cos(w_j . (p - q)) alone, and the mean of the first `pairs` waves.

    Shapes: freqs (D/2, 2) -> {label: (grid, grid)}
    """
    if not 1 <= pairs <= len(freqs):
        raise ValueError(f"pairs must be in 1..{len(freqs)}, got {pairs}.")
    f = torch.as_tensor(freqs, dtype=torch.float32)
    one = rope.similarity_kernel(f[pairs - 1:pairs], grid, grid, query_xy).numpy()
    total = rope.similarity_kernel(f[:pairs], grid, grid, query_xy).numpy()
    return {f"pair {pairs - 1} alone": one, f"mean of pairs 0..{pairs - 1}": total}


# ---------------------------------------------------------------- step 4: axial vs mixed


def fig_axial_vs_mixed(panels: dict[str, np.ndarray], kernels: dict[str, np.ndarray], query_xy) -> go.Figure:
    """Top: each kind's frequency vectors. Bottom: its similarity kernel around the query.

    Shapes: panels {label: (D/2, 2)}, kernels {label: (h, w)}
    """
    labels = list(panels)
    fig = make_subplots(rows=2, cols=len(labels), vertical_spacing=0.12, horizontal_spacing=0.12,
                        row_heights=[0.4, 0.6], subplot_titles=[f"{k}: frequency vectors" for k in labels]
                        + [f"{k}: similarity kernel" for k in labels])
    lim = 1.15 * max(float(np.hypot(*p.T).max()) for p in panels.values())
    for i, label in enumerate(labels, start=1):
        f = panels[label]
        fig.add_trace(go.Scatter(x=np.r_[f[:, 0], -f[:, 0]], y=np.r_[f[:, 1], -f[:, 1]], mode="markers",
                                 marker=dict(size=7, color=figures.PALETTE[i - 1]), showlegend=False,
                                 hovertemplate="w = (%{x:.3f}, %{y:.3f}) rad/patch<extra></extra>"), row=1, col=i)
        fig.update_xaxes(title_text="w_x (rad/patch)", range=[-lim, lim], row=1, col=i)
        fig.update_yaxes(title_text="w_y", range=[-lim, lim], row=1, col=i)
        k = kernels[label]
        fig.add_trace(go.Heatmap(z=k, zmin=-1, zmax=1, colorscale=figures.DIVERGING, showscale=i == len(labels),
                                 colorbar=dict(title="similarity", y=0.3, len=0.6),
                                 hovertemplate="x=%{x}, y=%{y}<br>similarity=%{z:.3f}<extra></extra>"), row=2, col=i)
        fig.add_trace(go.Scatter(x=[query_xy[0]], y=[query_xy[1]], mode="markers", showlegend=False,
                                 marker=dict(symbol="x-thin", size=14, line=dict(width=3, color="black"))),
                      row=2, col=i)
        fig.update_xaxes(title_text="x (patch)", range=[-0.5, k.shape[1] - 0.5], row=2, col=i)
        fig.update_yaxes(title_text="y (patch)", range=[k.shape[0] - 0.5, -0.5], row=2, col=i)
    fig.update_layout(height=720)
    return fig


def cross_strength(kernel: np.ndarray, query_xy) -> float:
    """Mean similarity along the query's row and column (far from it) minus the mean elsewhere far away:
    large for axial's cross, near 0 for mixed. Shapes: kernel (h, w) -> float"""
    h, w = kernel.shape
    qx, qy = query_xy
    ys, xs = np.mgrid[0:h, 0:w]
    far = np.hypot(xs - qx, ys - qy) >= 3
    on_cross = far & ((xs == qx) | (ys == qy))
    off_cross = far & (xs != qx) & (ys != qy)
    return float(kernel[on_cross].mean() - kernel[off_cross].mean())


# ---------------------------------------------------------------- step 5: beyond the training grid


def measured_top1(specs, mode: str) -> list[dict]:
    """Top-1 against resolution as measured in each bundled model's card (rope_viz eval --write).

    Models whose card has no measurement are left out. -> [{model, pos, train_res, patch, resolution, top1, n}]
    """
    rows = []
    for spec in specs:
        measured = (spec.card or {}).get("eval") or {}
        table = measured.get("top1", {}).get(mode, {})
        for res, top1 in sorted(table.items(), key=lambda kv: int(kv[0])):
            rows.append({"model": spec.label or spec.name, "pos": spec.pos, "train_res": spec.train_res,
                         "patch": spec.patch_size, "resolution": int(res), "top1": float(top1),
                         "n": measured.get("limit")})
    return rows


def fig_measured(rows: list[dict], resolution: int, mode: str) -> go.Figure:
    """Measured top-1 (%) against input size, the training size and the chosen size marked.

    Shapes: rows from measured_top1
    """
    fig = go.Figure()
    for i, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = [r for r in rows if r["model"] == model]
        fig.add_trace(go.Scatter(x=[r["resolution"] for r in mine], y=[r["top1"] for r in mine], name=model,
                                 mode="lines+markers", line=dict(color=figures.PALETTE[i % len(figures.PALETTE)],
                                                                 dash="dash" if mine[0]["pos"] == "ape" else "solid")))
    if rows:
        fig.add_vline(x=rows[0]["train_res"], line_dash="dot", annotation_text="training size")
    fig.add_vline(x=resolution, line_color="black", annotation_text=f"{resolution} px", annotation_position="bottom")
    fig.update_layout(title=f"Measured top-1 on held-out scenes ({mode} mode), bundled models", height=420,
                      xaxis_title="input size (px)", yaxis_title="top-1 (%)", yaxis_range=[0, 100])
    return fig


def beyond_summary(rows: list[dict], resolution: int) -> list[dict]:
    """Each model's top-1 at `resolution` and the change from its training size (percentage points).

    Shapes: rows from measured_top1 -> [{model, top1, change}], best first
    """
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = {r["resolution"]: r for r in rows if r["model"] == model}
        at, home = mine.get(resolution), mine.get(next(iter(mine.values()))["train_res"])
        if at and home:
            out.append({"model": model, "top1": at["top1"], "change": round(at["top1"] - home["top1"], 2)})
    return sorted(out, key=lambda r: -r["top1"])


def kernel(freqs: np.ndarray, query_xy, grid: int = GRID) -> np.ndarray:
    """Similarity kernel mean_j cos(w_j . (p - q)) of one head. Shapes: freqs (D/2, 2) -> (grid, grid)"""
    return rope.similarity_kernel(torch.as_tensor(freqs, dtype=torch.float32), grid, grid, query_xy).numpy()
