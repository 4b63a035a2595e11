"""The explorer's payload: the numbers the browser gets are the model's q and k, and its arithmetic
(re-done here in numpy exactly as explorer.js does it) equals capture.attention_rows."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from rope_viz import capture
from rope_viz.app import explorer


def fake_qk(heads=3, grid=(5, 4), dim=16, prefix=1, layers=2, seed=0) -> capture.QK:
    g = torch.Generator().manual_seed(seed)
    n = prefix + grid[0] * grid[1]
    q, k = (torch.randn(1, layers, heads, n, dim, generator=g) * 2 for _ in range(2))
    return capture.QK(q=q, k=k, grid=grid, num_prefix_tokens=prefix, scale=dim ** -0.5)


def blobs(payload: bytes) -> tuple[dict, bytes]:
    (size,) = struct.unpack("<I", payload[4:8])
    return explorer.unpack_header(payload), payload[8 + size:]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_payload_holds_image_and_layer_qk_aligned(dtype):
    a, b = fake_qk(seed=1), fake_qk(seed=2, heads=2, dim=8)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    payload = explorer.pack({"A": a, "B": b}, 1, pixels, 8, {"view": "heads", "key": "k"}, dtype)
    header, blob = blobs(payload)
    assert (len(payload) - len(blob)) % 4 == 0
    assert header["grid"] == [5, 4] and header["view"] == "heads" and header["dtype"] == dtype
    img = np.frombuffer(blob, np.uint8, pixels.size, header["image"]).reshape(pixels.shape)
    assert np.array_equal(img, pixels)
    for model, qk in zip(header["models"], (a, b)):
        H, N, D = model["heads"], model["tokens"], model["dim"]
        assert (H, N, D) == tuple(qk.q.shape[2:]) and model["prefix"] == 1 and model["scale"] == qk.scale
        assert model["q"] % 4 == 0 and model["k"] % 4 == 0
        q = np.frombuffer(blob, explorer.DTYPES[dtype], H * N * D, model["q"]).reshape(H, N, D)
        k = np.frombuffer(blob, explorer.DTYPES[dtype], H * N * D, model["k"]).reshape(H, N, D)
        tol = 0 if dtype == "float32" else 2e-3 * 8
        assert np.allclose(q, qk.q[0, 1].numpy(), atol=tol, rtol=0) and np.allclose(k, qk.k[0, 1].numpy(), atol=tol)


def test_browser_arithmetic_equals_attention_rows():
    qk = fake_qk(heads=12, grid=(28, 28), dim=64, layers=1)  # ViT-B/16 at 448 px: 785 tokens, 12 heads
    q, k = explorer.layer_qk(qk, 0)
    for query in (0, 1, 400, 784):
        exact = capture.attention_rows(qk, query)[0, 0].numpy()  # (H, N)
        assert np.abs(explorer.browser_rows(q, k, qk.scale, query) - exact).max() < 1e-6


def test_fp16_error_is_measured_and_small():
    error = explorer.fp16_error(fake_qk(heads=4, grid=(8, 8), dim=32, layers=1), 0)
    assert 0 < error < 1e-2


def test_models_on_different_grids_are_one_sentence():
    with pytest.raises(explorer.ExplorerError, match="different patch grids"):
        explorer.pack({"A": fake_qk(), "B": fake_qk(grid=(4, 4))}, 0, np.zeros((8, 8, 3), np.uint8), 8, {})


def test_a_subset_of_heads_is_packed_with_their_ids():
    qk = fake_qk(heads=4)
    pixels = np.zeros((40, 32, 3), np.uint8)
    payload = explorer.pack({"A": qk}, 1, pixels, 8, {"view": "heads"}, heads=[3, 1, 9])
    header, blob = blobs(payload)
    (model,) = header["models"]
    assert model["head_ids"] == [1, 3] and model["heads"] == 2  # sorted, past the last head dropped
    q = np.frombuffer(blob, np.float32, 2 * model["tokens"] * model["dim"], model["q"]).reshape(2, -1, model["dim"])
    assert np.array_equal(q, qk.q[0, 1, [1, 3]].numpy())
    assert "head_ids" not in explorer.unpack_header(explorer.pack({"A": qk}, 1, pixels, 8, {}))["models"][0]
    with pytest.raises(explorer.ExplorerError):
        explorer.pack({"A": qk}, 1, pixels, 8, {}, heads=[7])
