"""Patch features: exact shapes, PCA and similarity on a constructed feature set, stability, PNG."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, write_bundled
from rope_viz import features, models


def constructed_map(scale: float = 1.0):
    """4 x 4 patches, C = 5: 3 * x along e0, 2 * y along e1, a checkerboard along e2, plus an offset.

    The three patterns are centred and mutually orthogonal with variances 11.25 > 5 > 1, so the
    principal directions are e0, e1, e2 in that order.
    """
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    checker = (-1.0) ** (xs + ys)
    f = torch.zeros(4, 4, 5)
    f[..., 0], f[..., 1], f[..., 2] = 3 * (xs - 1.5) * scale, 2 * (ys - 1.5) * scale, checker * scale
    return f + torch.tensor([1.0, -2.0, 0.5, 3.0, 7.0]), xs, ys, checker


def test_pca_known_answer_with_one_basis_for_two_maps():
    big, xs, ys, checker = constructed_map()
    small, *_ = constructed_map(scale=0.5)  # the same directions, half the spread: a "second resolution"
    basis = features.fit_pca([big, small], clip=0.0)
    torch.testing.assert_close(basis.components, torch.eye(5)[:3], atol=1e-6, rtol=0)
    rgb_big, rgb_small = features.pca_rgb(big, basis), features.pca_rgb(small, basis)
    assert rgb_big.shape == (4, 4, 3) and rgb_small.shape == (4, 4, 3)
    # Ranges come from both maps together: the big map spans them, x -> x / 3, y -> y / 3, checker -> 0 / 1.
    torch.testing.assert_close(rgb_big, torch.stack([xs / 3, ys / 3, (checker + 1) / 2], -1), atol=1e-6, rtol=0)
    # The small map's colours are on the same scale: half the distance from the middle.
    torch.testing.assert_close(rgb_small, 0.5 + 0.5 * (rgb_big - 0.5), atol=1e-6, rtol=0)
    # A colour means one feature: the same vector gets the same colour in either map.
    assert torch.equal(features.pca_rgb(big[1:2, 2:3], basis), rgb_big[1:2, 2:3])


def test_pca_pads_missing_directions_and_flat_components():
    flat = torch.ones(2, 2, 4)  # no spread at all
    rgb = features.pca_rgb(flat, features.fit_pca([flat]))
    assert rgb.shape == (2, 2, 3) and torch.all(rgb == 0.5)
    with pytest.raises(features.FeatureError):
        features.fit_pca([])


def test_patch_similarity_known_answer():
    f = torch.zeros(3, 4, 6)
    f[:, :2, 0] = 2.0  # left half along e0
    f[:, 2:, 1] = 5.0  # right half along e1
    f[2, 3] = torch.tensor([-1.0, 0, 0, 0, 0, 0])  # one patch opposite the left half
    sim = features.patch_similarity(f, (1, 0))
    expected = torch.zeros(3, 4)
    expected[:, :2], expected[2, 3] = 1.0, -1.0
    torch.testing.assert_close(sim, expected)
    with pytest.raises(features.FeatureError, match="outside the 4 x 3 grid"):
        features.patch_similarity(f, (4, 0))
    assert features.relative_to_patch(0.99, 0.0, (3, 4)) == (3, 0)
    assert features.relative_to_patch(0.5, 0.5, (6, 10)) == (5, 3)


def test_stability_known_answers_and_resampling_shapes():
    ref = torch.randn(2, 3, 3, 8)
    torch.testing.assert_close(features.feature_stability(ref, ref), torch.ones(2))
    torch.testing.assert_close(features.feature_stability(-ref, ref), -torch.ones(2))
    const = torch.randn(1, 1, 1, 8).expand(1, 6, 6, 8)
    assert features.resample_features(const, (4, 4)).shape == (1, 4, 4, 8)
    torch.testing.assert_close(features.feature_stability(const, const[:, :4, :4]), torch.ones(1))
    up = features.resample_features(ref, (6, 6))
    assert up.shape == (2, 6, 6, 8)


@pytest.fixture
def tiny_models(tmp_path, monkeypatch):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("ROPE_VIZ_CACHE", str(tmp_path / "cache"))
    for i, pos in enumerate(("ape", "rope_mixed")):
        write_bundled(tmp_path / "models", pos, name=f"f-{pos}", seed=i)
    return ["f-ape", "f-rope_mixed"]


def test_patch_features_shapes_and_tokens(tiny_models):
    loaded = models.load_model("f-rope_mixed")
    x = torch.randn(2, 3, 48, 40)
    f = features.compute_patch_features(loaded, x)
    assert f.shape == (2, 6, 5, TINY["embed_dim"])
    with torch.no_grad():
        tokens = loaded.module.forward_features(x)  # (B, 1 + 30, C): CLS first, then patches row-major
    torch.testing.assert_close(f[1, 2, 3], tokens[1, 1 + 2 * 5 + 3])
    with pytest.raises(features.FeatureError, match="multiple of the patch size"):
        features.compute_patch_features(loaded, torch.randn(1, 3, 30, 32))
    headless = models.build_eva(models.eva_architecture("rope_mixed", **{**TINY, "num_classes": 0})).eval()
    assert features.compute_patch_features(headless, x).shape == (2, 6, 5, TINY["embed_dim"])


def test_stability_sweep_rows(tiny_models):
    rows = features.stability_sweep(tiny_models, [32, 48, 64], n_images=3, device="cpu")
    assert [(r["model"], r["resolution"], r["train_res"], r["n"]) for r in rows] == [
        (m, r, 32, 3) for m in tiny_models for r in (32, 48, 64)]
    for row in rows:
        if row["resolution"] == 32:
            assert row["similarity"] == pytest.approx(1.0, abs=1e-5)
        assert -1 <= row["min"] <= row["similarity"] <= 1
    with pytest.raises(features.FeatureError, match="valid: zoom, canvas"):
        features.stability_sweep(tiny_models, [32], mode="crop")


def test_mosaic_png_tiles():
    red = np.zeros((2, 2, 3))
    red[..., 0] = 1.0
    blue = np.zeros((3, 3, 3), dtype=np.uint8)
    blue[..., 2] = 255
    png = features.mosaic_png([[red, blue], [features.similarity_to_rgb(np.ones((4, 4)))]], cell=20, gap=2)
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape == (2 * 22 + 2, 2 * 22 + 2, 3)
    assert tuple(image[10, 10]) == (255, 0, 0) and tuple(image[10, 34]) == (0, 0, 255)
    assert tuple(image[34, 10]) == tuple((np.array([0.70, 0.09, 0.17]) * 255).round().astype(np.uint8))
    assert tuple(image[0, 0]) == (255, 255, 255)
