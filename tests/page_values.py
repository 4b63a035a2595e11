"""Reading the values a page shows under AppTest (chart data, the image a map was drawn on) and the values
they should have, computed here from the library functions the pages call. Nothing here is a test."""
from __future__ import annotations

import base64
import io
import json
import struct

import numpy as np
import torch
from PIL import Image

from rope_viz.app import explorer
from rope_viz.measure import capture


def figures(at) -> list[dict]:
    """Every Plotly chart on the page as its figure JSON."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def figure(at, title_start: str) -> dict:
    """The one chart whose title starts with `title_start`."""
    found = [f for f in figures(at) if f["layout"].get("title", {}).get("text", "").startswith(title_start)]
    assert len(found) == 1, (title_start, [f["layout"].get("title", {}).get("text") for f in figures(at)])
    return found[0]


def array(value) -> np.ndarray:
    """A trace's array: a list, or Plotly's typed array {dtype, bdata (base64), shape?}."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return out.reshape([int(s) for s in str(shape).split(",")]) if shape else out
    return np.asarray(value, dtype=np.float64)


def trace(fig: dict, name: str) -> dict:
    found = [t for t in fig["data"] if t.get("name") == name]
    assert len(found) == 1, (name, [t.get("name") for t in fig["data"]])
    return found[0]


def axial_theory(head_dim: int, theta: float) -> np.ndarray:
    """RoPE-Axial by hand: f_i = theta^(-4i/D), i < D/4, the first D/4 pairs along x, the next along y.

    Shapes: -> (D/2, 2)"""
    f = theta ** (-4.0 * np.arange(head_dim // 4) / head_dim)
    zeros = np.zeros_like(f)
    return np.concatenate([np.stack([f, zeros], -1), np.stack([zeros, f], -1)])


def drawn_vectors(at, panel: int) -> np.ndarray:
    """The frequency vectors the Frequencies page draws in one panel of its first chart (without the mirrors).

    Shapes: -> (D/2, 2)"""
    drawn = figure(at, "Frequency vectors")["data"][panel]
    x, y = array(drawn["x"]), array(drawn["y"])
    half = len(x) // 2  # each vector is drawn with its mirror -w
    return np.stack([x[:half], y[:half]], -1)


def explorer_pixels(at, key: str = "att_explorer") -> np.ndarray:
    """The image the browser-side explorer draws its maps on (the model's input). Shapes: -> (R, R, 3) uint8"""
    payload = next(e for e in at.get("bidi_component") if e.key == key).proto.bytes
    header = explorer.unpack_header(payload)
    (size,) = struct.unpack("<I", payload[4:8])
    start = 8 + size + header["image"]
    height, width = header["resolution"]
    return np.frombuffer(payload[start:start + height * width * 3], np.uint8).reshape(height, width, 3)


def overlay_pixels(fig: dict) -> np.ndarray:
    """The image under a server-drawn attention map (a PNG data URI, lossless). Shapes: -> (R, R, 3) uint8"""
    source = next(t for t in fig["data"] if t["type"] == "image")["source"]
    raw = base64.b64decode(source.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


def mean_distance(loaded, pixels: np.ndarray) -> np.ndarray:
    """Mean attention distance per layer (mean over heads) of the model's own forward on `pixels`.

    Shapes: pixels (R, R, 3) uint8 -> (L,)"""
    x = loaded.normalise(torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None])
    return capture.mean_attention_distance(capture.capture_qk(loaded, x))[0].mean(-1).double().numpy()


def drawn_mean_distance(at, label: str) -> np.ndarray:
    """The 'mean' curve of one model in the page's attention-distance chart. Shapes: -> (L,)"""
    return array(trace(figure(at, "Mean attention distance"), f"{label}: mean")["y"])
