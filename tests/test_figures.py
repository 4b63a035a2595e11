"""Figure builders: the image under a map is the model's input, pixel for pixel, in patch coordinates."""
import base64
import io

import numpy as np
from PIL import Image

from rope_viz.app import figures


def decode(source: str) -> np.ndarray:
    head, data = source.split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def test_png_source_is_lossless():
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    assert np.array_equal(decode(figures.png_source(image)), image)


def test_attention_overlay_puts_the_image_under_the_patch_grid():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # 4 x 4 patches of 8 px
    panels = {"head 0": rng.random((4, 4)), "head 1": rng.random((4, 4))}
    fig = figures.fig_attention_overlay(image, panels, 8, 1.0, 0.5, (2, 3), title="t")
    pictures = [t for t in fig.data if t.type == "image"]
    assert len(pictures) == 2 and all(np.array_equal(decode(p.source), image) for p in pictures)
    # Pixel u's centre sits at (u + 0.5) / 8 - 0.5 patches: pixel 0 at -0.4375, pixel 31 at 3.4375,
    # so the image spans patches -0.5 .. 3.5, the heatmap's cells.
    p = pictures[0]
    assert p.x0 == -0.4375 and p.dx == 0.125 and p.y0 == -0.4375 and p.dy == 0.125
    maps = [t for t in fig.data if t.type == "heatmap"]
    assert [np.asarray(m.z).tolist() for m in maps] == [panels["head 0"].tolist(), panels["head 1"].tolist()]
    queries = [t for t in fig.data if t.type == "scatter" and t.marker.symbol == "x-thin"]
    assert [(tuple(q.x), tuple(q.y)) for q in queries] == [((2,), (3,))] * 2


def test_attribution_overlay_sends_the_image_once_per_panel_as_png():
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    image[:, 8:] = 255
    fig = figures.fig_attribution_overlay(image, {"a": np.ones((16, 16)), "b": np.ones((2, 2))}, False, 0.5, "t")
    pictures = [t for t in fig.data if t.type == "image"]
    assert len(pictures) == 2 and all(np.array_equal(decode(p.source), image) for p in pictures)
    assert all(p.z is None for p in pictures)
