"""What the Anatomy page and the Attention page's head grid show, decided from primitives: one logit pair
by pair, frequency usage and head kinds, frequency coverage, the self-check's rows, token norms and sinks.
Arrays and rows out (numpy, plain Python), no Streamlit; the math itself is rope_viz.anatomy's.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from rope_viz import rope
from rope_viz.measure import anatomy, capture, positions
from rope_viz.runtime import memory
from rope_viz.runtime.locking import model_lock

AXIS_TOLERANCE = 1e-6  # a pair lies on an axis when its other component is below this share of |w|
AXIS_RANK = {"x": 0, "y": 1, "x and y": 2, "none": 3}  # x pairs, then y pairs, then oblique, then unrotated


def prefix_labels(num_prefix: int, num_registers: int) -> list[str]:
    """Names of the prefix tokens, in token order (CLS first, then the registers, as in timm)."""
    cls = max(num_prefix - num_registers, 0)
    return ["CLS"] * cls + [f"register {i + 1}" for i in range(num_registers)]


def token_label(token: int, grid: tuple[int, int], labels: list[str]) -> str:
    """'CLS', 'register 2' or 'patch (x, y)' for a token index (prefix tokens first)."""
    if token < len(labels):
        return labels[token]
    y, x = divmod(token - len(labels), grid[1])
    return f"patch ({x}, {y})"


def pick_token(kind: str, x: int, y: int, grid: tuple[int, int], labels: list[str]) -> int:
    """The token index a (kind, x, y) choice names: a prefix token by its label, else patch (x, y)."""
    if kind in labels:
        return labels.index(kind)
    return len(labels) + int(y) * grid[1] + int(x)


def run_freqs(loaded, grid: tuple[int, int], method: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The rotation a capture under `method` received: (freqs (L, H, D/2, 2) rad/patch, positions (P, 2)
    patches) on `grid`, the method's vectors where it changes them (as views.capture_image applies it);
    (None, None) for APE-only models."""
    module = loaded.module
    own = rope.model_freqs(module, grid)
    if own is None:
        return None, None
    train = loaded.spec.train_res // loaded.spec.patch_size
    moved = positions.method_for_model(module, method, grid, (train, train))
    freqs = moved.freqs if moved is not None and moved.freqs is not None else own
    return freqs.float().numpy(), rope.model_positions(module, grid).numpy()


def pair_axes(freqs_head: np.ndarray) -> list[str]:
    """Each pair's axis: 'x' (w_y = 0), 'y' (w_x = 0), 'x and y' (oblique) or 'none' (w = 0, no rotation)."""
    w = np.asarray(freqs_head, dtype=np.float64)
    mag = np.hypot(w[:, 0], w[:, 1])
    return ["none" if m == 0 else "x" if abs(wy) <= AXIS_TOLERANCE * m else "y" if abs(wx) <= AXIS_TOLERANCE * m
            else "x and y" for (wx, wy), m in zip(w, mag)]


def pair_order(freqs_head: np.ndarray) -> list[int]:
    """Pairs in display order: grouped by axis (x, then y; oblique pairs together; unrotated last), fastest
    |w_j| first within a group. Shapes: freqs_head (D/2, 2) -> D/2 pair indices"""
    w = np.asarray(freqs_head, dtype=np.float64)
    mag, axes = np.hypot(w[:, 0], w[:, 1]), pair_axes(w)
    return sorted(range(len(w)), key=lambda j: (AXIS_RANK[axes[j]], -mag[j], j))


def logit_pairs_view(qk: capture.QK, freqs: np.ndarray, positions_: np.ndarray, layer: int, head: int, query: int,
                     key: int) -> dict:
    """One logit pair by pair (anatomy.logit_anatomy) in display order, with the logit the model computed
    (q . k * scale from the capture, fp32 as the model's attention) and the attention weight it became.

    Shapes: freqs (L, H, D/2, 2), positions_ (P, 2) -> {rows, logit, sum, offset, attention}
    """
    a = anatomy.logit_anatomy(qk, torch.from_numpy(freqs), torch.from_numpy(positions_), layer, head, query, key)
    logit = float((qk.q[0, layer, head, query] * qk.k[0, layer, head, key]).sum() * qk.scale)
    weight = float(capture.attention_rows(qk, query)[0, layer, head, key])
    w = a.freqs.double().numpy()
    axes = pair_axes(w)
    rows = [{"pair": j, "axis": axes[j], "w_x (rad/patch)": float(w[j, 0]), "w_y (rad/patch)": float(w[j, 1]),
             "|w| (rad/patch)": float(math.hypot(*w[j])), "term (logit)": float(a.terms[j]),
             "same position (logit)": float(a.same_position[j]), "content removed (logit)": float(a.content_removed[j]),
             "scale |q_j||k_j| (logit)": float(a.magnitude[j]), "content angle (rad)": float(a.content_angle[j]),
             "position angle (rad)": float(a.position_angle[j])} for j in pair_order(w)]
    return {"rows": rows, "logit": logit, "sum": a.logit, "offset": a.offset, "attention": weight}


def usage_view(qk: capture.QK, freqs: np.ndarray) -> dict:
    """Frequency usage per layer, head and pair and each head's kind (anatomy.frequency_usage, head_kinds).

    Shapes: freqs (L, H, D/2, 2) -> {usage (L, H, D/2), magnitude (L, H, D/2), share (L, H), kind L x H}
    """
    f = torch.from_numpy(freqs)
    usage = anatomy.frequency_usage(qk)
    kinds = anatomy.head_kinds(usage, f)
    return {"usage": usage.numpy(), "magnitude": f.norm(dim=-1).numpy(),
            "share": np.array([[h["share"] for h in row] for row in kinds]),
            "kind": [[h["kind"] for h in row] for row in kinds]}


def usage_rows(usage: dict) -> list[dict]:
    """usage_view as long rows (one per layer, head and pair) for the CSV."""
    L, H, half = usage["usage"].shape
    return [{"layer": layer, "head": head, "pair": j, "|w| (rad/patch)": float(usage["magnitude"][layer, head, j]),
             "usage (logit)": float(usage["usage"][layer, head, j]),
             "head share on the faster half": float(usage["share"][layer, head]), "head kind": usage["kind"][layer][head]}
            for layer in range(L) for head in range(H) for j in range(half)]


def coverage_rows(freqs_head: np.ndarray, grid: tuple[int, int], train_grid: tuple[int, int]) -> list[dict]:
    """anatomy.frequency_coverage of one head (D/2, 2) on `grid` against the training grid."""
    return anatomy.frequency_coverage(torch.from_numpy(np.asarray(freqs_head)), tuple(grid), tuple(train_grid))


def self_check_view(loaded) -> dict:
    """anatomy.self_check of a model as {ok, message, rows (one per layer)}; no rows for APE-only models."""
    check = anatomy.self_check(loaded.module)
    rows = [{"layer": i, "patch-to-patch change under a shift": r, "prefix-token change under a shift": p,
             "layout error": e} for i, (r, p, e) in enumerate(zip(check.relative, check.prefix, check.layout))]
    return {"ok": bool(check.ok), "message": check.message, "rows": rows}


def token_norms(loaded, pixels: np.ndarray, method: str = "native") -> np.ndarray:
    """Every block's output-token norms (anatomy.token_norms) on one image under a position method.

    Runs under the model's lock: token_norms' hooks record every thread's forward through the shared model.
    Shapes: pixels (R, R, 3) uint8 -> (L, N) prefix tokens first
    """
    x = loaded.normalise(torch.tensor(pixels).permute(2, 0, 1)[None])
    patch = loaded.spec.patch_size
    grid = (pixels.shape[0] // patch, pixels.shape[1] // patch)
    train = loaded.spec.train_res // patch
    with memory.out_of_memory_as_error(f"The token norms of {loaded.spec.name} at {pixels.shape[0]} px"), \
            model_lock(loaded.module), positions.apply_method(loaded.module, method, grid, (train, train)):
        return anatomy.token_norms(loaded, x)[0].cpu().numpy()


def attention_received(qk: capture.QK, layer: int) -> np.ndarray:
    """anatomy.attention_received (mean over heads and queries), computed capture.ROW_CHUNK query rows at a
    time so no N x N map is held (a 2048 px capture has 16k tokens). Shapes: -> (N,)"""
    q, k = qk.q[0, layer], qk.k[0, layer]  # (H, N, D)
    total = torch.zeros(qk.num_tokens, dtype=torch.float64)
    for start in range(0, qk.num_tokens, capture.ROW_CHUNK):
        rows = ((q[:, start:start + capture.ROW_CHUNK] * qk.scale) @ k.transpose(-2, -1)).softmax(-1)  # (H, c, N)
        total += rows.sum(dim=(0, 1)).double()
    return (total / (q.shape[0] * qk.num_tokens)).float().numpy()


def sink_rows(norms: np.ndarray, received: np.ndarray, layer: int, grid: tuple[int, int], labels: list[str],
              top: int = 8) -> list[dict]:
    """The `top` tokens receiving the most attention in `layer`, with their output norm after that layer.

    Shapes: norms (L, N), received (N,)
    """
    order = np.argsort(-received, kind="stable")[:top]
    median = float(np.median(norms[layer, len(labels):]))
    return [{"rank": r + 1, "token": token_label(int(t), grid, labels), "attention received": float(received[t]),
             "× an even share": float(received[t] * len(received)), "norm after the layer": float(norms[layer, t]),
             "norm / patch median": float(norms[layer, t] / median) if median else math.nan}
            for r, t in enumerate(order)]


def norm_rows(norms: np.ndarray, received: np.ndarray, layer: int, grid: tuple[int, int], labels: list[str]) -> list[dict]:
    """One row per token: its norm after every layer and the attention it receives in `layer` (the CSV)."""
    return [{"token": t, "name": token_label(t, grid, labels),
             **{f"norm after layer {i}": float(norms[i, t]) for i in range(len(norms))},
             f"attention received in layer {layer}": float(received[t])} for t in range(norms.shape[1])]


def head_grid(qk: capture.QK, query_xy: tuple[int, int]) -> np.ndarray:
    """The query patch's attention map in every layer and head (BertViz's model view).

    Shapes: -> (L, H, gh, gw) attention weights over the patches (prefix tokens left out)
    """
    rows = capture.attention_rows(qk, capture.patch_token(qk, *query_xy))[0]  # (L, H, N)
    return capture.to_grid(qk, rows).numpy()
