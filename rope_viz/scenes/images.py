"""Images users give: reading, validating and converting uploads and files, resizing and normalising.

Every failure is an ImageError with one sentence for the UI (rope_viz.scenes.data re-exports these names).
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from rope_viz.errors import RopeVizError

MAX_PIXELS = 40_000_000  # uploads above this are refused before decoding


class ImageError(RopeVizError):
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
        if isinstance(err, UnidentifiedImageError):
            why = "its contents are not in an image format this app reads"
        elif "truncated" in str(err):
            why = "the file is cut short"
        else:
            why = f"the file is damaged ({type(err).__name__})"
        raise ImageError(f"{name} is not a readable image: {why}.") from err
    return to_rgb(image)


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
SMALL_SIDE = 16  # px: below this an image is mostly interpolation once enlarged to a model's input


def describe_conversion(raw: bytes, name: str = "upload") -> str | None:
    """One sentence on what load_image changed to make `raw` a plain RGB picture (frames, EXIF turn,
    bit depth, CMYK, transparency, a tiny size), or None when nothing worth saying happened.
    Call it on bytes load_image accepted."""
    notes = []
    with Image.open(io.BytesIO(raw)) as probe:
        frames = getattr(probe, "n_frames", 1)
        if frames > 1:
            notes.append(f"the first of its {frames} frames is used")
        if probe.getexif().get(0x0112, 1) not in (1, None):
            notes.append("it is turned upright as its EXIF orientation says")
        if probe.mode in SIXTEEN_BIT_MODES:
            bits = 16 if probe.mode.startswith("I;16") else 32
            notes.append(f"its {bits}-bit values are stretched to 8-bit grey")
        elif probe.mode == "CMYK":
            notes.append("its CMYK colours are converted to RGB")
        if probe.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in probe.info:
            notes.append("transparent pixels are shown on white")
        width, height = probe.size
        if min(width, height) < SMALL_SIDE:
            notes.append(f"it is only {width} x {height} px, so enlarging it shows little detail")
    return f"{name}: {'; '.join(notes)}." if notes else None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: alpha composited on white, 16-bit/float scaled, CMYK converted."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in SIXTEEN_BIT_MODES:
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


RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
              "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS,
              "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}


def resize_center_crop(image: Image.Image, resolution: int, interpolation: str = "bicubic",
                       crop_pct: float = 1.0) -> torch.Tensor:
    """Resize the short side to floor(resolution / crop_pct) and centre crop `resolution` square.

    The same pixels as timm's eval transform (`resolve_model_data_config` + `create_transform`, centre
    crop mode): torchvision's rounding of the long side and of the crop's corner, PIL's antialiased
    filters. The defaults (bicubic, crop ratio 1.0) are the paper's multi-resolution evaluation policy.
    Shapes: -> (3, R, R) float32 in [0, 1]
    """
    if interpolation not in RESAMPLING:
        raise ImageError(f"Unknown interpolation {interpolation!r}; valid: {', '.join(RESAMPLING)}.")
    if not 0 < crop_pct <= 1:
        raise ImageError(f"A crop ratio must be in (0, 1], got {crop_pct}.")
    image = to_rgb(image)
    w, h = image.size
    short = math.floor(resolution / crop_pct)
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_w, new_h = int(short * w / h), short
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), RESAMPLING[interpolation])
    left, top = int(round((new_w - resolution) / 2.0)), int(round((new_h - resolution) / 2.0))
    image = image.crop((left, top, left + resolution, top + resolution))
    arr = np.asarray(image, dtype=np.float32) / 255.0  # (R, R, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (B, 3, R, R) -> float (B, 3, R, R) normalised with the model's statistics."""
    x = images.float() / 255.0
    return (x - torch.tensor(mean, device=x.device).view(1, 3, 1, 1)) / torch.tensor(std, device=x.device).view(1, 3, 1, 1)


def keep_aspect_size(height: int, width: int, resolution: int, step: int) -> tuple[int, int]:
    """The size an image of height x width px gets at `resolution` when its aspect is kept: about
    resolution^2 pixels, both sides multiples of `step` (at least one step), as Qwen2-VL's smart_resize rounds
    (its factor = step, min_pixels = max_pixels = resolution^2). -> (h, w) px"""
    scale = math.sqrt(resolution * resolution / (height * width))
    return (max(step, round(height * scale / step) * step), max(step, round(width * scale / step) * step))


def resize_keep_aspect(image: Image.Image, resolution: int, step: int, interpolation: str = "bicubic") -> torch.Tensor:
    """Resize (no crop) to keep_aspect_size: the native dynamic resolution of towers that take any aspect.

    Shapes: -> (3, h, w) float32 in [0, 1]"""
    if interpolation not in RESAMPLING:
        raise ImageError(f"Unknown interpolation {interpolation!r}; valid: {', '.join(RESAMPLING)}.")
    image = to_rgb(image)
    h, w = keep_aspect_size(image.size[1], image.size[0], resolution, step)
    if (w, h) != image.size:
        image = image.resize((w, h), RESAMPLING[interpolation])
    arr = np.asarray(image, dtype=np.float32) / 255.0  # (h, w, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
