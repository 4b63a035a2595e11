"""Qwen2.5-VL's vision tower (transformers `Qwen2_5_VisionTransformerPretrainedModel`): Qwen2-VL's rotation and
merge-block patches (qwen2_vl.py), with window attention on every layer but `fullatt_block_indexes`.

Windows are window_size px squares (112 px = 4 x 4 merge blocks = 8 x 8 patches in the released models),
row-major over the image; the tower reorders its merge blocks window by window once, before the first block
(window_index), and keeps that order to its last hidden state. Windowed layers call the attention function
once per window; windows at the bottom and right edges hold fewer blocks where the grid does not fill them
(no padding tokens). The full-attention layers see the whole image in the same order.
"""
from __future__ import annotations

import torch

from rope_viz.adapters.towers.qwen2_vl import Qwen2VL, merge_order


def window_index(merged: tuple[int, int], window: int) -> torch.Tensor:
    """The merge blocks' raster indices window by window: windows of `window` x `window` blocks row-major,
    blocks row-major inside each (edge windows smaller). Shapes: merged (bh, bw) -> (bh * bw,) long"""
    bh, bw = merged
    blocks = torch.arange(bh * bw).reshape(bh, bw)
    return torch.cat([blocks[i:i + window, j:j + window].flatten()
                      for i in range(0, bh, window) for j in range(0, bw, window)])


class Qwen25VL(Qwen2VL):
    key = "qwen2_5_vl"
    label = "Qwen2.5-VL vision"
    about = ("Qwen2-VL's axial RoPE and merge blocks, window attention (112 px windows) on all but a few "
             "full-attention layers, blocks reordered window by window")
    model_types = ("qwen2_5_vl", "qwen2_5_vl_vision")
    model_type = "qwen2_5_vl"
    tower_class = "Qwen2_5_VisionTransformerPretrainedModel"
    image_processor = ("qwen2_vl", "Qwen2VLImageProcessor")  # Qwen2.5-VL uses Qwen2-VL's processor

    def width(self, hf) -> int:
        return int(hf.config.hidden_size)

    def window(self, hf) -> int:
        """A window's side in merge blocks."""
        return int(hf.config.window_size) // self.merge(hf) // self.patch(hf)

    def windowed_layers(self, body) -> tuple[bool, ...]:
        full = set(body.hf.config.fullatt_block_indexes)
        return tuple(i not in full for i in range(len(self.attentions(body.hf))))

    def token_order(self, hf, grid: tuple[int, int], layer: int | None = None) -> torch.Tensor:
        """Merge-block order with the blocks taken window by window (the same order in every layer and in the
        last hidden state, which the tower never reorders back). Shapes: -> (gh * gw,) long"""
        m = self.merge(hf)
        blocks = merge_order(grid, m).reshape(-1, m * m)  # (blocks, m * m) raster indices, raster block order
        return blocks[window_index((grid[0] // m, grid[1] // m), self.window(hf))].flatten()


ADAPTER = Qwen25VL()
