"""Sizes of the standalone HTML explorer (rope_viz.app.standalone): bytes of the file for one head of one
layer, one layer and every layer, for the bundled models at 64/128/256 px (one model, and the Attention page's default
pair APE + RoPE-Mixed) and for ViT-B/16 RoPE-Mixed (timm, random weights) at 224 px. float32 q and k.

A payload holds, per model and layer, q and k (H, N, D) float32 plus the image; the file holds them base64
(x 4/3) plus the frontend sources (about 15 kB).
Usage: python bench/html_sizes.py [--out table.md]
"""
from __future__ import annotations

import argparse

import numpy as np
import timm
import torch

from rope_viz import capture, data, models
from rope_viz.app import standalone

STATE = {"view": "query", "head": 0, "opacity": 0.6, "pinned": [0, 0], "key": "bench", "panel_px": 400}


def pixels_at(resolution: int) -> np.ndarray:
    """The Attention page's default image. Shapes: -> (R, R, 3) uint8"""
    sample = sorted((models.ASSETS_DIR / "images").glob("scene_*.png"))[0]
    image = data.load_image(sample.read_bytes(), sample.name)
    return (data.resize_center_crop(image, resolution) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def sizes(captures: dict[str, capture.QK], pixels: np.ndarray, patch: int) -> tuple[int, int, int, int]:
    """(layers, HTML bytes with the last layer's head 0, with the last layer, with every layer)"""
    depth = min(qk.num_layers for qk in captures.values())
    head = standalone.explorer_html(standalone.layer_payloads(captures, [depth - 1], pixels, patch, STATE, heads=[0]),
                                    "bench")
    one = standalone.explorer_html(standalone.layer_payloads(captures, [depth - 1], pixels, patch, STATE), "bench")
    every = standalone.explorer_html(standalone.layer_payloads(captures, range(depth), pixels, patch, STATE), "bench")
    return depth, len(head.encode()), len(one.encode()), len(every.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table (Markdown) here")
    args = parser.parse_args()
    rows = []
    bundled = {name: models.load_model(name) for name in ("scenes-ape", "scenes-rope-mixed")}
    for resolution in (64, 128, 256):
        pixels = pixels_at(resolution)
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        caps = {name: capture.capture_qk(m, m.normalise(x)) for name, m in bundled.items()}
        for label, chosen in (("scenes-rope-mixed", ["scenes-rope-mixed"]),
                              ("scenes-ape + scenes-rope-mixed", list(caps))):
            rows.append((label, resolution, *sizes({n: caps[n] for n in chosen}, pixels, 8)))
    torch.manual_seed(0)
    vit = timm.create_model("vit_base_patch16_rope_mixed_224", pretrained=False).eval()
    pixels = pixels_at(224)
    x = (torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        qk = capture.capture_qk(vit, x)
    rows.append(("ViT-B/16 RoPE-Mixed (random)", 224, *sizes({"ViT-B/16": qk}, pixels, 16)))
    lines = ["| model | px | layers | one layer, one head | one layer | all layers |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {m} | {r} | {L} | {h / 1e6:.3f} MB | {one / 1e6:.3f} MB | {every / 1e6:.3f} MB |"
              for m, r, L, h, one, every in rows]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
