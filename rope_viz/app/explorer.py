"""The browser-side attention explorer's payload: one layer's post-RoPE q and k, packed once.

The browser (rope_viz/app/frontend/explorer.js) computes softmax(q_i K^T * scale) for the patch under
the mouse from exactly these numbers, so what it draws equals capture.attention_rows. Layout of
the bytes (little-endian): b"RVX1", uint32 header length, UTF-8 JSON header padded to 4 bytes,
then the blobs the header points at (offsets from the start of the blob section, 4-byte aligned):
the image as RGB uint8 (R, R, 3) and, per model, q and k (H, N, D) as float32 or float16.
"""
from __future__ import annotations

import json
import struct

import numpy as np
import torch

from rope_viz.measure import capture
from rope_viz.errors import RopeVizError

MAGIC = b"RVX1"
DTYPES = {"float32": np.float32, "float16": np.float16}
VIEWS = ("query", "heads", "mean", "cls")  # the attention views the browser draws (rollout stays on the server)


class ExplorerError(RopeVizError):
    """The explorer cannot show this combination; one sentence for the UI."""


def layer_qk(qk: capture.QK, layer: int, dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """One layer's q and k of the first image, as sent to the browser. Shapes: -> q, k (H, N, D)"""
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}.")
    if not 0 <= layer < qk.num_layers:
        raise ExplorerError(f"Layer {layer} is outside 0..{qk.num_layers - 1}.")
    q = qk.q[0, layer].float().numpy().astype(DTYPES[dtype])  # (H, N, D)
    k = qk.k[0, layer].float().numpy().astype(DTYPES[dtype])
    return q, k


def pack(captures: dict[str, capture.QK], layer: int, pixels: np.ndarray, patch: int, state: dict,
         dtype: str = "float32", heads: list[int] | None = None) -> bytes:
    """Image plus one layer's q and k of every model (same grid), and the view `state`, as one payload.

    `state` carries what the browser needs besides the numbers (view, head, opacity, pinned query,
    payload_id); model labels are the dict's keys. `heads` (default: all) keeps only those heads of each
    model (ids past a model's last head are dropped); the header then names them ("head_ids") so the
    browser labels the panels by the model's own head numbers.
    Shapes: pixels (R, R, 3) uint8; q, k (B, L, H, N, D) each
    """
    grids = {qk.grid for qk in captures.values()}
    if len(grids) != 1:
        raise ExplorerError("The models see different patch grids; pick models with the same patch size.")
    (gh, gw), = grids
    blobs, offset = [], 0

    def add(array: np.ndarray) -> int:
        nonlocal offset
        raw = np.ascontiguousarray(array).tobytes()
        raw += b"\0" * (-len(raw) % 4)  # keep every typed array 4-byte aligned
        blobs.append(raw)
        start, offset = offset, offset + len(raw)
        return start

    image = np.ascontiguousarray(pixels, dtype=np.uint8)
    header = {"grid": [gh, gw], "patch": patch, "resolution": [int(image.shape[0]), int(image.shape[1])],
              "image": add(image), "dtype": dtype, "layer": layer, "models": [], **state}
    for label, qk in captures.items():
        q, k = layer_qk(qk, min(layer, qk.num_layers - 1), dtype)
        entry = {}
        if heads is not None:
            ids = sorted({int(h) for h in heads if 0 <= int(h) < q.shape[0]})
            if not ids:
                raise ExplorerError(f"None of heads {list(heads)} is in {label} (heads 0..{q.shape[0] - 1}).")
            q, k, entry = q[ids], k[ids], {"head_ids": ids}
        H, N, D = q.shape
        if qk.segments is not None:  # a windowed layer: each query sees only the keys of its own window
            entry["segments"] = add(qk.segments[min(layer, qk.num_layers - 1)].numpy().astype(np.int32))
        header["models"].append({"label": label, "heads": H, "tokens": N, "dim": D, "scale": qk.scale,
                                 "prefix": qk.num_prefix_tokens, "q": add(q), "k": add(k), **entry})
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 4)
    return MAGIC + struct.pack("<I", len(text)) + text + b"".join(blobs)


def unpack_header(payload: bytes) -> dict:
    """The JSON header of a payload (what the browser reads first)."""
    if payload[:4] != MAGIC:
        raise ValueError("Not an explorer payload.")
    (size,) = struct.unpack("<I", payload[4:8])
    return json.loads(payload[8:8 + size])


def browser_rows(q: np.ndarray, k: np.ndarray, scale: float, query: int, segments: np.ndarray | None = None) -> np.ndarray:
    """The explorer's arithmetic in numpy (float64 sums of the sent numbers), for tests and the fp16 check.

    segments: the layer's window of each token (keys outside the query's window get no weight), or None.
    Shapes: q, k (H, N, D), segments (N,) -> (H, N) softmax rows of query token `query`
    """
    logits = (q[:, query].astype(np.float64)[:, None, :] * k.astype(np.float64)).sum(-1) * scale  # (H, N)
    if segments is not None:
        logits = np.where(segments[None, :] == segments[query], logits, -np.inf)
    logits -= logits.max(-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(-1, keepdims=True)


def fp16_error(qk: capture.QK, layer: int) -> float:
    """Largest absolute difference, over every query row and head of a layer, between attention
    from float16-rounded q and k and capture's float32 attention (what sending fp16 would cost)."""
    exact = capture.attention_map(qk, layer)[0]  # (H, N, N)
    q16, k16 = (torch.from_numpy(a.astype(np.float32)) for a in layer_qk(qk, layer, "float16"))
    logits = (q16 * qk.scale) @ k16.transpose(-2, -1)  # (H, N, N)
    rounded = capture.masked_softmax(logits, capture.visible(qk, layer, slice(0, qk.num_tokens)))
    return float((rounded - exact).abs().max())
