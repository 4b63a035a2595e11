"""Image input: decoding, converting every mode, EXIF orientation (bad files: tests/test_bad_input.py)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rope_viz import data


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_exif_rotation_applied():
    image = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    out = data.load_image(encode(image, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40) and out.mode == "RGB"


def test_modes_convert_correctly():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red -> white background
    assert data.to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    sixteen = Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16))
    assert sixteen.mode.startswith("I;16")
    assert data.to_rgb(sixteen).getpixel((1, 1)) == (255, 255, 255)  # stretched, not clipped to 255
    assert data.to_rgb(sixteen).getpixel((1, 0)) == (64, 64, 64)
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))
    assert data.to_rgb(cmyk).getpixel((0, 0)) == (255, 0, 0)
    palette = Image.new("P", (2, 2))
    palette.putpalette([0, 0, 255] * 256)
    assert data.to_rgb(palette).getpixel((0, 0)) == (0, 0, 255)


def test_resize_center_crop_shape_and_range():
    x = data.resize_center_crop(Image.new("RGB", (300, 100), (0, 128, 255)), 64)
    assert x.shape == (3, 64, 64) and x.min() >= 0 and x.max() <= 1
    assert abs(x[1].mean().item() - 128 / 255) < 1e-3
