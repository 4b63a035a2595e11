"""Images in: reading, validating and converting what users give, and resizing for a model.

Procedural scenes (render_scene, CLASS_NAMES, EVAL_SEEDS) live here too once bundled models land.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # uploads above this are refused before decoding


class ImageError(ValueError):
    """An image could not be used; the message is one sentence meant for the UI."""


def load_image(raw: bytes, name: str = "upload") -> Image.Image:
    """Decode bytes into an RGB PIL image, refusing empty, corrupt or oversized files.

    EXIF orientation is applied, so a phone photo shows the way it was taken.
    """
    if not raw:
        raise ImageError(f"{name} is empty.")
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            width, height = probe.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{name} is {width} x {height} = {width * height / 1e6:.0f} megapixels; "
                    f"the limit is {MAX_PIXELS / 1e6:.0f}."
                )
            probe.load()
            image = ImageOps.exif_transpose(probe)  # a transposed copy, upright as it was taken
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{name} is not a readable image ({type(err).__name__}).") from err
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: alpha composited on white, 16-bit/float scaled, CMYK converted."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and float data: stretch the actual range to 0..255 rather than clip it.
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        image = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resize_center_crop(image: Image.Image, resolution: int) -> torch.Tensor:
    """Resize the short side to `resolution` (bicubic, antialiased) and centre crop a square.

    This is the paper's evaluation policy (crop ratio 1.0). Shapes: -> (3, R, R) float32 in [0, 1]
    """
    image = to_rgb(image)
    w, h = image.size
    scale = resolution / min(w, h)
    new_w, new_h = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - resolution) // 2, (new_h - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    arr = np.asarray(image, dtype=np.float32) / 255.0  # (R, R, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
