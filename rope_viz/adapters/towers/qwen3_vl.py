"""Qwen3-VL's vision tower (transformers `Qwen3VLVisionModel`): Qwen2-VL's rotation and merge-block patches
(qwen2_vl.py), every layer full attention, plus a learned square absolute table (`pos_embed`, 48 x 48 in the
released models) resampled bilinearly with align_corners to each grid by the tower itself and added once
after the patch embedding.

Its deepstack mergers read some blocks' outputs for the language model; they change nothing the blocks
compute, so rope-viz shows the blocks and the last block's tokens only. The released checkpoints normalise
with mean = std = 0.5 (their preprocessor_config.json), not the image processor class's CLIP default.
"""
from __future__ import annotations

import math

from rope_viz.adapters.towers.qwen2_vl import Qwen2VL


class Qwen3VL(Qwen2VL):
    key = "qwen3_vl"
    label = "Qwen3-VL vision"
    about = ("Qwen2-VL's axial RoPE and merge blocks, full attention, plus a learned square APE table resampled "
             "bilinearly (align_corners) to the grid")
    model_types = ("qwen3_vl", "qwen3_vl_vision")
    model_type = "qwen3_vl"
    tower_class = "Qwen3VLVisionModel"
    own_ape_resampling = True  # bilinear, align_corners=True, in its own forward

    def mean_std(self, hf):
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def width(self, hf) -> int:
        return int(hf.config.hidden_size)

    def has_ape(self, body) -> bool:
        return getattr(body.hf, "pos_embed", None) is not None

    def train_grid(self, body, module=None) -> tuple[int, int]:
        """The absolute table's own grid (its side: sqrt of num_position_embeddings)."""
        side = math.isqrt(int(body.hf.pos_embed.num_embeddings))
        return side, side


ADAPTER = Qwen3VL()
