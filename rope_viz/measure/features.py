"""Dense patch features across resolutions: PCA colour maps, patch similarity and stability.

The label-free picture of extrapolation, and the only one for models without a classifier: run
the same image at several resolutions and compare the last layer's patch features.
- PCA maps: one basis fitted on the patches of *all* resolutions together, so a colour means
  the same feature direction in every panel (a basis per panel would recolour each one).
- Patch similarity: cosine similarity of one patch's feature to every patch.
- Stability: mean cosine similarity of the features at resolution r, resampled onto the training
  grid, to the features at the training resolution (zoom: the same content at more pixels, so
  patch (i, j) of both grids covers the same part of the image).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rope_viz import models
from rope_viz import adapters
from rope_viz.scenes import data
from rope_viz.errors import RopeVizError


class FeatureError(RopeVizError):
    """Features could not be computed; the message is one sentence meant for the UI."""


def compute_patch_features(loaded_or_module, images: torch.Tensor) -> torch.Tensor:
    """Last-layer patch features (after the final norm), prefix tokens (CLS, registers) dropped.

    Works for headless models too: timm's forward_features stops before any classifier.
    Shapes: images (B, 3, H, W) normalised -> (B, H/p, W/p, C) float32
    """
    module = adapters.module_of(loaded_or_module)
    B, _, height, width = images.shape
    ph, pw = adapters.patch_size(adapters.body_of(module))
    adapters.check_patch_multiple((ph, pw), height, width, FeatureError)
    adapters.check_image_size(module, height, width)
    gh, gw = height // ph, width // pw
    with torch.inference_mode():
        tokens = module.forward_features(images)  # (B, N, C), N = prefix + gh * gw; (B, gh, gw, C) for some towers
    if tokens.ndim == 4:  # NHWC token grids (Qwen3's and DeepSeek's wrappers): no prefix tokens
        tokens = tokens.flatten(1, 2)
    patches = tokens[:, adapters.prefix_tokens(module)["total"]:].float()  # (B, gh * gw, C)
    return patches.reshape(B, gh, gw, -1).clone()


# ---------------------------------------------------------------- PCA colour maps

@dataclass(frozen=True)
class PCABasis:
    """Three principal directions of a set of features, and the range each is mapped onto [0, 1] with.

    Shapes: mean (C,), components (3, C) orthonormal rows, low (3,), high (3,)
    """

    mean: torch.Tensor
    components: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor


def image_patch_features(loaded, pixels: np.ndarray) -> np.ndarray:
    """Last-layer patch features of one image given as uint8 pixels, on the CPU (to be cached).

    Shapes: pixels (R, R, 3) uint8 -> (gh, gw, C) float32
    """
    x = loaded.normalise(torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None])  # (1, 3, R, R)
    return compute_patch_features(loaded, x)[0].cpu().numpy()


def pca_maps(feature_maps: list[np.ndarray]) -> list[np.ndarray]:
    """PCA colour maps of several feature maps with ONE basis fitted on all of them (comparable colours).

    Shapes: [(gh_r, gw_r, C)] -> [(gh_r, gw_r, 3) float in [0, 1]]
    """
    maps = [torch.from_numpy(np.asarray(m)) for m in feature_maps]
    basis = fit_pca(maps)
    return [pca_rgb(m, basis).numpy() for m in maps]


def similarity_map(feature_map: np.ndarray, query_xy: tuple[int, int]) -> np.ndarray:
    """patch_similarity on a numpy feature map. Shapes: (gh, gw, C) -> (gh, gw)"""
    return patch_similarity(torch.from_numpy(np.asarray(feature_map)), query_xy).numpy()


def fit_pca(feature_maps: list[torch.Tensor], clip: float = 0.01) -> PCABasis:
    """One PCA basis for the patches of every map together (principal directions by SVD, fp64).

    Each component's sign makes its largest loading positive (SVD's sign is arbitrary). The colour
    range of a component runs from its `clip` to its 1 - `clip` quantile over all patches (clip = 0:
    min to max), so one bright outlier does not wash out the others. Fewer than 3 directions
    (tiny sets) are padded with zero components.
    Shapes: feature_maps [(..., C)] -> PCABasis
    """
    if not feature_maps:
        raise FeatureError("PCA needs at least one feature map.")
    X = torch.cat([f.reshape(-1, f.shape[-1]).double() for f in feature_maps])  # (P, C) all patches
    mean = X.mean(0)
    _, _, vh = torch.linalg.svd(X - mean, full_matrices=False)  # rows of vh: principal directions
    comps = vh[:3]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))  # (k, 1)
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
    if comps.shape[0] < 3:
        comps = torch.cat([comps, comps.new_zeros(3 - comps.shape[0], comps.shape[1])])
    proj = (X - mean) @ comps.T  # (P, 3)
    low, high = (proj.quantile(clip, dim=0), proj.quantile(1 - clip, dim=0)) if clip > 0 else \
        (proj.amin(0), proj.amax(0))
    return PCABasis(mean=mean.float(), components=comps.float(), low=low.float(), high=high.float())


def pca_rgb(features: torch.Tensor, basis: PCABasis) -> torch.Tensor:
    """Project features on the basis and map each component's range onto [0, 1] (clamped): R, G, B.

    A component with no spread (zero range) is drawn at 0.5.
    Shapes: features (..., C) -> (..., 3) in [0, 1]
    """
    proj = (features.double() - basis.mean.double()) @ basis.components.double().T  # (..., 3)
    span = (basis.high - basis.low).double()
    rgb = torch.where(span > 0, (proj - basis.low.double()) / span.clamp_min(1e-30), torch.full_like(proj, 0.5))
    return rgb.clamp(0, 1).float()


# ---------------------------------------------------------------- similarity and stability

def patch_similarity(features: torch.Tensor, query_xy: tuple[int, int]) -> torch.Tensor:
    """Cosine similarity of the patch at column x, row y to every patch.

    Shapes: features (gh, gw, C) -> (gh, gw) in [-1, 1]
    """
    gh, gw, _ = features.shape
    x, y = query_xy
    if not (0 <= x < gw and 0 <= y < gh):
        raise FeatureError(f"Patch ({x}, {y}) is outside the {gw} x {gh} grid.")
    return F.cosine_similarity(features, features[y, x].expand_as(features), dim=-1)


def relative_to_patch(u: float, v: float, grid: tuple[int, int]) -> tuple[int, int]:
    """The patch (x, y) of a gh x gw grid that contains the point (u, v) given as fractions of width and height."""
    gh, gw = grid
    return min(max(int(u * gw), 0), gw - 1), min(max(int(v * gh), 0), gh - 1)


def resample_features(features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Features on another patch grid: bilinear, align_corners=False (patch centres), antialiased when shrinking.

    Shapes: features (B, gh, gw, C) -> (B, grid[0], grid[1], C)
    """
    if tuple(features.shape[1:3]) == tuple(grid):
        return features
    x = features.permute(0, 3, 1, 2)  # (B, C, gh, gw) channels first for F.interpolate
    shrink = grid[0] < features.shape[1] or grid[1] < features.shape[2]
    out = F.interpolate(x, size=tuple(grid), mode="bilinear", align_corners=False, antialias=shrink)
    return out.permute(0, 2, 3, 1)


def feature_stability(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of features (resampled onto the reference grid) to the reference, per image.

    Shapes: features (B, gh, gw, C), reference (B, th, tw, C) -> (B,)
    """
    resampled = resample_features(features, tuple(reference.shape[1:3]))  # (B, th, tw, C)
    return F.cosine_similarity(resampled, reference, dim=-1).mean(dim=(1, 2))


def stability_sweep(model_names, resolutions, n_images: int = 8, mode: str = "zoom", device: str | None = None,
                    load=models.load_model, progress: Callable[[int, int, dict], None] | None = None) -> list[dict]:
    """Feature stability of every model at every resolution on `n_images` held-out scenes (no labels used).

    The reference is each model's own training resolution. Returns one row per model x resolution:
    {model, resolution, train_res, mode, similarity (mean over images), min, n}.
    """
    device = device or models.default_device()
    if mode not in data.MODES:
        raise FeatureError(f"Unknown scene mode {mode!r}; valid: {', '.join(data.MODES)}.")
    seeds = range(data.EVAL_SEEDS.start, data.EVAL_SEEDS.start + n_images)
    rows, done, total = [], 0, len(model_names) * len(resolutions)
    for name in model_names:
        loaded = load(name, device=device)
        patch, train_res = loaded.spec.patch_size, loaded.spec.train_res

        def features_at(resolution: int) -> torch.Tensor:
            images, _ = data.scene_tensors(seeds, resolution, mode)  # (n, 3, R, R) uint8
            return compute_patch_features(loaded, loaded.normalise(images))

        reference = features_at(train_res)
        for requested in resolutions:
            resolution = max(patch, int(round(requested / patch)) * patch)
            scores = feature_stability(features_at(resolution), reference)
            rows.append({"model": name, "resolution": resolution, "train_res": train_res, "mode": mode,
                         "similarity": round(float(scores.mean()), 5), "min": round(float(scores.min()), 5),
                         "n": n_images})
            done += 1
            if progress is not None:
                progress(done, total, rows[-1])
    return rows


# ---------------------------------------------------------------- PNG export

def mosaic_png(rows: list[list[np.ndarray]], cell: int = 192, gap: int = 6) -> bytes:
    """A PNG of image rows (any sizes; each drawn nearest-neighbour at cell x cell px), white gaps.

    Made with PIL from the arrays, so no browser-based exporter is needed.
    Shapes: rows [[(h, w, 3) float in [0, 1] or uint8]]
    """
    n_cols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (n_cols * (cell + gap) + gap, len(rows) * (cell + gap) + gap), "white")
    for i, row in enumerate(rows):
        for j, array in enumerate(row):
            a = np.asarray(array)
            a = a if a.dtype == np.uint8 else (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
            tile = Image.fromarray(a, "RGB").resize((cell, cell), Image.NEAREST)
            canvas.paste(tile, (gap + j * (cell + gap), gap + i * (cell + gap)))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def similarity_to_rgb(similarity: np.ndarray) -> np.ndarray:
    """Cosine similarity in [-1, 1] as RGB through a blue-white-red ramp (the PNG's similarity tiles).

    Shapes: (h, w) -> (h, w, 3) float in [0, 1]
    """
    s = np.clip(np.asarray(similarity, dtype=np.float64), -1, 1)[..., None]
    blue, white, red = np.array([0.13, 0.40, 0.67]), np.ones(3), np.array([0.70, 0.09, 0.17])
    return np.where(s >= 0, white + s * (red - white), white + (-s) * (blue - white))
