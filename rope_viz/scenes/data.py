"""Images in: procedural scenes at any resolution, and (re-exported from rope_viz.scenes.images) reading,
validating and converting what users give.

A scene is drawn from a seed in "base pixels" (the 64 px training frame) and rendered with
signed distance functions, so the same scene comes out anti-aliased at any resolution:
- mode "zoom": the same 64 x 64 frame at R pixels (content grows with R: the paper's setting);
- mode "canvas": objects keep their size in pixels and the field of view grows to R x R base
  pixels around the frame (pure position extrapolation: more patches, same content scale);
- training views at a scale (`scale_range`): a square window of 64 / s base pixels, placed at
  random around the labelled pair, rendered at R pixels, so objects appear s times their frame
  size. This is the procedural form of ImageNet's random-resized crops (see scaled_window).

The label is (shape of the one filled object) x (side of the small dot beside it):
CLASS_NAMES[label] = "<shape>, dot <left|right>". The shape needs local appearance, the side
needs the relative position of two objects, which is what RoPE encodes. Hollow outlines and
thin lines are distractors and never count.
"""
from __future__ import annotations

import colorsys
import hashlib
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rope_viz.runtime import memory
from rope_viz.scenes.images import (MAX_PIXELS, RESAMPLING, SIXTEEN_BIT_MODES, SMALL_SIDE, ImageError,  # noqa: F401
                                    describe_conversion, keep_aspect_size, load_image, normalise, resize_center_crop,
                                    resize_keep_aspect, to_rgb)
from rope_viz.scenes.shapes import SHAPES, coverage, sdf_segment, sdf_shape


# ---------------------------------------------------------------- procedural scenes

BASE_RES = 64  # scene units are pixels of the 64 px training frame
CLASS_NAMES = [f"{shape}, dot {side}" for shape in SHAPES for side in ("left", "right")]
TRAIN_SEEDS = range(0, 5_000_000)
EVAL_SEEDS = range(10_000_000, 10_100_000)  # held out: disjoint from TRAIN_SEEDS
MODES = ("zoom", "canvas")
# Sized so that a small ViT learns the task from scratch in minutes on a CPU: with radius 6-10
# shapes and 2.5 distractors per tile, trials stayed near chance for 60k training images.
DOT_RADIUS = 4.0
SHAPE_RADIUS = (12.0, 17.0)  # base pixels
GAP = (3.0, 6.0)  # between the shape's edge and the dot's centre
DISTRACTOR_DENSITY = 0.6  # distractors per 64 x 64 tile of the plane
TEXTURE_AMPLITUDE = (0.01, 0.03)
ROTATION = (0.0, 2 * np.pi)  # radians, of the labelled shape
FIELD = (-64.0, 128.0)  # extent of the plane that canvas mode can show (up to 192 px)


@dataclass(frozen=True)
class Scene:
    """The layout of one scene in base pixels; rendering is a pure function of it."""

    seed: int
    label: int
    shape: str
    center: tuple[float, float]
    radius: float
    rotation: float
    dot: tuple[float, float]
    colors: tuple  # (key, dot, background) RGB in [0, 1]
    gratings: tuple  # ((kx, ky, phase, amplitude), ...) background texture, rad per base pixel
    distractors: tuple  # (("outline", shape, (x, y), radius, rotation, rgb) | ("line", a, b, rgb), ...)

    @property
    def pair_box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) around the labelled shape and dot."""
        return _pair_box(self.center, self.radius, self.dot)


def _pair_box(center, radius: float, dot, margin: float = 0.0) -> tuple[float, float, float, float]:
    (cx, cy), (dx, dy) = center, dot
    return (min(cx - radius, dx - DOT_RADIUS) - margin, min(cy - radius, dy - DOT_RADIUS) - margin,
            max(cx + radius, dx + DOT_RADIUS) + margin, max(cy + radius, dy + DOT_RADIUS) + margin)


def _bright(rng) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.55, 1.0), rng.uniform(0.75, 1.0))


def make_scene(seed: int) -> Scene:
    """Draw a scene's layout from its seed. The label is seed % 10, so any 10 seeds are balanced."""
    rng = np.random.default_rng(seed)
    label = int(seed) % len(CLASS_NAMES)
    shape, side = SHAPES[label // 2], label % 2  # side 0: dot left of the shape, 1: right
    radius = rng.uniform(*SHAPE_RADIUS)
    gap = radius + rng.uniform(*GAP)
    dot_offset = np.array([gap if side else -gap, rng.uniform(-3.0, 3.0)])
    # Place the pair anywhere in the frame with a 2 px border.
    lo = np.array([radius, radius]) + np.maximum(0, -dot_offset + DOT_RADIUS - radius)
    hi = np.array([radius, radius]) + np.maximum(0, dot_offset + DOT_RADIUS - radius)
    center = rng.uniform(2 + lo, BASE_RES - 2 - hi)
    dot = center + dot_offset
    background = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.7), rng.uniform(0.12, 0.4))
    gratings = tuple(
        (float(np.cos(a) * k), float(np.sin(a) * k), float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(*TEXTURE_AMPLITUDE)))
        for a, k in zip(rng.uniform(0, np.pi, 3), 2 * np.pi / rng.uniform(6.0, 30.0, 3))
    )
    box = _pair_box(center, radius, dot, margin=3)
    distractors = []
    # About 2.5 distractors per 64 x 64 tile of the plane, never touching the labelled pair.
    for _ in range(rng.poisson(DISTRACTOR_DENSITY * ((FIELD[1] - FIELD[0]) / BASE_RES) ** 2)):
        p = rng.uniform(FIELD[0], FIELD[1], 2)
        size = rng.uniform(5.0, 11.0)
        if p[0] + size > box[0] and p[0] - size < box[2] and p[1] + size > box[1] and p[1] - size < box[3]:
            continue
        color = _bright(rng)
        if rng.uniform() < 0.6:
            distractors.append(("outline", SHAPES[rng.integers(len(SHAPES))], (float(p[0]), float(p[1])),
                                float(size), float(rng.uniform(0, 2 * np.pi)), color))
        else:
            a = rng.uniform(0, np.pi)
            half = size * np.array([np.cos(a), np.sin(a)])
            distractors.append(("line", tuple(map(float, p - half)), tuple(map(float, p + half)), color))
    return Scene(seed=int(seed), label=label, shape=shape, center=tuple(map(float, center)), radius=float(radius),
                 rotation=float(rng.uniform(*ROTATION)), dot=tuple(map(float, dot)),
                 colors=(_bright(rng), _bright(rng), background), gratings=gratings, distractors=tuple(distractors))


def view_scale(seed: int, scale_range: tuple[float, float]) -> tuple[float, np.random.Generator]:
    """The object scale s of a training view, log-uniform in scale_range, and the view's generator.

    The generator is seeded by (seed, SCALE_STREAM), a stream apart from the layout's, so a scene's
    layout is the same with and without scale augmentation.
    """
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"A scale range needs 0 < low <= high, got {scale_range}.")
    rng = np.random.default_rng([int(seed), SCALE_STREAM])
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), rng


SCALE_STREAM = 1  # the second seed word of training views' generators (layouts use the bare seed)


def scaled_window(scene: Scene, scale: float, rng: np.random.Generator) -> tuple[float, float, float]:
    """(x0, y0, side) in base pixels: a square view in which objects appear `scale` times their frame size.

    As a random-resized crop keeps an image's label, the view keeps the labelled pair: it is placed
    uniformly among the positions that show the whole pair and stay inside the plane's distractor
    field. When the pair is wider than the view (s above about 1.45), the dot's side is kept and
    the far side of the shape is cut; a pair taller than the view is cut equally at top and bottom.
    """
    side = BASE_RES / scale
    x0, y0, x1, y1 = scene.pair_box
    dot_right = scene.dot[0] > scene.center[0]
    origin = []
    for axis, (lo, hi) in enumerate(((x0, x1), (y0, y1))):
        if hi - lo <= side - 1:
            first, last = max(FIELD[0], hi + 0.5 - side), min(FIELD[1] - side, lo - 0.5)
            origin.append(float(rng.uniform(first, last)) if first < last else (lo + hi - side) / 2)
        elif axis == 0:
            origin.append(hi + 0.5 - side if dot_right else lo - 0.5)  # the dot and the near side of the shape
        else:
            origin.append((lo + hi - side) / 2)
    return origin[0], origin[1], side


def scene_window(scene: Scene, resolution: int, mode: str) -> tuple[float, float, float]:
    """(x0, y0, base pixels per output pixel) of the rendered view.

    Canvas views are centred on the frame, shifted only as far as needed to keep the labelled
    pair in view when the canvas is smaller than the frame; a pair wider than the canvas (large
    shapes at 32 px) is cut on both sides.
    """
    if mode == "zoom":
        return 0.0, 0.0, BASE_RES / resolution
    if mode != "canvas":
        raise ImageError(f"Unknown scene mode {mode!r}; valid: {', '.join(MODES)}.")
    x0, y0, x1, y1 = scene.pair_box
    half = resolution / 2
    origin = []
    for lo, hi in ((x0, x1), (y0, y1)):
        if hi - lo > resolution - 1:
            c = (lo + hi) / 2  # the pair is wider than the canvas: show its middle
        else:
            c = min(max(BASE_RES / 2, hi - half + 0.5), lo + half - 0.5)  # keep [lo, hi] inside the view
        origin.append(c - half)
    return origin[0], origin[1], 1.0


def render(scene: Scene, resolution: int, mode: str = "zoom", window: tuple[float, float, float] | None = None) -> np.ndarray:
    """Rasterise a scene, in a mode's view or in `window` (x0, y0, side in base pixels).

    Shapes: -> (R, R, 3) float64 in [0, 1]
    """
    if not isinstance(resolution, int) or not 8 <= resolution <= 1024:
        raise ImageError(f"Scene resolution must be an integer from 8 to 1024 px, got {resolution}.")
    if window is None:
        x0, y0, px = scene_window(scene, resolution, mode)
        view_key = MODES.index(mode)
    else:
        x0, y0, px = window[0], window[1], window[2] / resolution
        view_key = len(MODES)  # windowed views draw their own noise
    centers = (np.arange(resolution) + 0.5) * px
    xs, ys = np.meshgrid(x0 + centers, y0 + centers)  # (R, R) each, row = y
    points = np.stack([xs, ys], axis=-1)
    key, dot_color, background = (np.asarray(c) for c in scene.colors)
    texture = sum(amp * np.sin(kx * xs + ky * ys + ph) for kx, ky, ph, amp in scene.gratings)
    image = np.clip(background + texture[..., None], 0, 1) * np.ones(3)

    def paint(box, distance_fn, color):
        """Blend one object, evaluating its distance only on the pixels of its box (x0, y0, x1, y1)."""
        i0, j0 = (max(0, int(np.floor((b - o) / px)) - 1) for b, o in zip(box[:2], (x0, y0)))
        i1, j1 = (min(resolution, int(np.ceil((b - o) / px)) + 1) for b, o in zip(box[2:], (x0, y0)))
        if i0 >= i1 or j0 >= j1:
            return  # outside the view
        alpha = coverage(distance_fn(points[j0:j1, i0:i1]), px)[..., None]
        region = image[j0:j1, i0:i1]
        image[j0:j1, i0:i1] = region * (1 - alpha) + np.asarray(color) * alpha

    for item in scene.distractors:
        if item[0] == "outline":
            _, kind, c, r, rot, color = item
            paint((c[0] - r - 1, c[1] - r - 1, c[0] + r + 1, c[1] + r + 1),
                  lambda p: np.abs(sdf_shape(p, kind, c, r, rot)) - 0.7, color)
        else:
            _, a, b, color = item
            paint((min(a[0], b[0]) - 1, min(a[1], b[1]) - 1, max(a[0], b[0]) + 1, max(a[1], b[1]) + 1),
                  lambda p: sdf_segment(p, a, b) - 0.7, color)
    (cx, cy), r = scene.center, scene.radius
    paint((cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1),
          lambda p: sdf_shape(p, scene.shape, scene.center, r, scene.rotation), key)
    (dx, dy), dr = scene.dot, DOT_RADIUS + 1
    paint((dx - dr, dy - dr, dx + dr, dy + dr), lambda p: np.linalg.norm(p - np.asarray(scene.dot), axis=-1)
          - DOT_RADIUS, dot_color)
    # Sensor noise, seeded by the view so that every render of the same view is identical.
    noise = np.random.default_rng([scene.seed, resolution, view_key]).normal(0, 0.015, image.shape)
    return np.clip(image + noise, 0, 1)


def render_scene(seed: int, resolution: int, mode: str = "zoom") -> tuple[Image.Image, int]:
    """The scene of `seed` as an RGB image at `resolution` px, and its label (see CLASS_NAMES)."""
    scene = make_scene(seed)
    pixels = (render(scene, resolution, mode) * 255).round().astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB"), scene.label


def render_scaled_scene(seed: int, resolution: int, scale_range: tuple[float, float]) -> tuple[Image.Image, int, float]:
    """A training view of `seed` with objects at a random scale (view_scale, scaled_window): image, label, scale."""
    scene = make_scene(seed)
    scale, rng = view_scale(seed, scale_range)
    pixels = render(scene, resolution, window=scaled_window(scene, scale, rng))
    return Image.fromarray((pixels * 255).round().astype(np.uint8), mode="RGB"), scene.label, scale


def render_batch(seeds, resolution: int, mode: str = "zoom",
                 scale_range: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes as a uint8 batch; with scale_range, training views at random scales (mode unused).

    Shapes: -> images (B, 3, R, R) uint8, labels (B,) int64
    """
    images, labels = [], []
    for seed in seeds:
        if scale_range is None:
            image, label = render_scene(int(seed), resolution, mode)
        else:
            image, label, _ = render_scaled_scene(int(seed), resolution, scale_range)
        images.append(torch.from_numpy(np.array(image)).permute(2, 0, 1))  # a writable copy
        labels.append(label)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)



def scene_cache_dir() -> Path:
    """Where rendered scene tensors are kept (env ROPE_VIZ_CACHE, default ~/.cache/rope_viz)."""
    return Path(os.environ.get("ROPE_VIZ_CACHE", Path.home() / ".cache" / "rope_viz"))


def scene_tensors(seeds: range, resolution: int, mode: str = "zoom", cache_dir: Path | None = None,
                  workers: int = 2, scale_range: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Render scenes once and keep them as a tensor file that later runs reuse.

    Large sets render in worker processes; small ones in this process (starting workers costs seconds).
    With scale_range, training views at random scales (render_batch); the range is part of the file name.
    Shapes: -> images (N, 3, R, R) uint8, labels (N,) int64
    """
    view = mode if scale_range is None else f"scaled{scale_range[0]:g}-{scale_range[1]:g}"
    path = Path(cache_dir or scene_cache_dir()) / f"scenes_{seeds.start}_{seeds.stop}_{resolution}_{view}.pt"
    # Sweeps ask for the same sets again and again: keep them in the shared byte-bounded cache. One
    # thread renders a given set while the others asking for it wait (and never write the same file).
    return memory.shared_cache().get_or_compute(
        ("scenes", str(path), len(seeds)), lambda: _scene_tensors(path, seeds, resolution, mode, workers, scale_range))


def _scene_tensors(path: Path, seeds: range, resolution: int, mode: str, workers: int, scale_range):
    view = path.stem.split("_", 4)[4]
    for cached in [path, *sorted(path.parent.glob(f"scenes_{seeds.start}_*_{resolution}_{view}.pt"))]:
        stop = int(cached.name.split("_")[2])
        if cached.exists() and stop >= seeds.stop:  # this file, or a longer run of the same seeds
            blob = torch.load(cached, weights_only=True)
            return blob["images"][:len(seeds)], blob["labels"][:len(seeds)]
    chunks = [range(s, min(s + 2000, seeds.stop)) for s in range(seeds.start, seeds.stop, 2000)]
    if len(seeds) * resolution ** 2 < 4000 * 64 ** 2 or workers < 2:
        parts = [render_batch(chunk, resolution, mode, scale_range) for chunk in chunks]
    else:
        # "spawn", not fork: forking after torch has started its thread pool can deadlock the workers.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(render_batch, chunks, [resolution] * len(chunks), [mode] * len(chunks),
                                  [scale_range] * len(chunks)))
    images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")  # unique per writer
    torch.save({"images": images, "labels": labels}, tmp)
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return images, labels


# ---------------------------------------------------------------- what the pages show

INPUT_SOURCES = ("scene", "sample", "upload")


def input_image(source: str, value: str, resolution: int, raw: bytes | None = None, aspect_step: int = 0) -> np.ndarray:
    """The image a model sees: a scene rendered at R ("scene", value "seed:mode"), or a file resized and
    centre-cropped (value: a "sample" path, or an "upload" name with its raw bytes). Raises ImageError.
    aspect_step > 0: a file keeps its aspect instead (about R^2 pixels, sides multiples of aspect_step: the native
    dynamic resolution of towers such as Qwen-VL and Pixtral); scenes are square anyway.

    Shapes: -> (R, R, 3) uint8 ((h, w, 3) with aspect_step), read-only (it may be shared by sessions)
    """
    if source == "scene":
        seed, mode = value.split(":")
        image, _ = render_scene(int(seed), resolution, mode)
    elif source == "sample":
        image = load_image(Path(value).read_bytes(), Path(value).name)
    elif source == "upload":
        image = load_image(raw or b"", value)
    else:
        raise ValueError(f"Unknown image source {source!r}; valid: {', '.join(INPUT_SOURCES)}.")
    if aspect_step and source != "scene":
        pixels = resize_keep_aspect(image, resolution, aspect_step)  # (3, h, w) in [0, 1]
    else:
        pixels = resize_center_crop(image, resolution)  # (3, R, R) in [0, 1]; identity for a scene at R
    out = (pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    out.setflags(write=False)
    return out


def pixels_key(pixels: np.ndarray) -> str:
    """A short content key of an image (shape and SHA-1 of its bytes) for caches keyed on primitives."""
    return f"{pixels.shape}:{hashlib.sha1(pixels.tobytes()).hexdigest()}"
