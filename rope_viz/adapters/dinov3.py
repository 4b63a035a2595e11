"""DINOv3 (Simeoni et al. 2025; timm `vit_*_dinov3*`): axial RoPE on patch centres normalised to [-1, 1].

Coordinate 2 (i + 0.5 + o) / d - 1 per axis, d the axis length ('separate') or max/min of both, so
pair j turns by 2 pi / period_j per unit: w = 4 pi / (period d) rad/patch and the offset is
0.5 + o - d / 2 (both grid-dependent). Pairs are half-split (rotate_half); CLS and 4 registers.
"""
from __future__ import annotations

import math

import torch
from timm.layers.pos_embed_sincos import RotaryEmbeddingDinoV3

from rope_viz.adapters.base import Adapter, axis_pairs, expand_heads, rope_module


def denominators(rope, grid) -> tuple[float, float]:
    """(d_h, d_w): the lengths the coordinates are normalised by."""
    gh, gw = grid
    if rope.normalize_coords == "min":
        return float(min(gh, gw)), float(min(gh, gw))
    if rope.normalize_coords == "max":
        return float(max(gh, gw)), float(max(gh, gw))
    return float(gh), float(gw)  # 'separate'


class DinoV3(Adapter):
    key = "dinov3"
    label = "DINOv3"
    grid_dependent = True
    about = "axial RoPE on patch centres normalised to [-1, 1], half-split pairs, registers"

    def matches(self, body) -> bool:
        return isinstance(rope_module(body), RotaryEmbeddingDinoV3)

    def read_freqs(self, body, grid) -> torch.Tensor:
        rope = rope_module(body)
        d_h, d_w = denominators(rope, grid)
        periods = rope.periods.detach().double().cpu()  # (D/4,)
        return expand_heads(body, axis_pairs(4 * math.pi / (periods * d_w), 4 * math.pi / (periods * d_h),
                                             rope.grid_indexing))

    def offset(self, body, grid) -> tuple[float, float]:
        rope = rope_module(body)
        d_h, d_w = denominators(rope, grid)
        o = float(rope.grid_offset)
        return 0.5 + o - d_w / 2, 0.5 + o - d_h / 2


ADAPTER = DinoV3()
