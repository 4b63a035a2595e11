"""timm's RotaryEmbeddingCat on a patch-index grid: the reader naver RoPE-Axial, EVA-02, SBB and PE share.

Patch (x, y) turns pair j by band_j * (index + grid_offset), the index rescaled onto `ref_feat_shape`
when the model has one (EVA's scheme): w = band * ref / g per axis, so rad/patch depend on the grid.
"""
from __future__ import annotations

import torch
from timm.layers.pos_embed_sincos import RotaryEmbeddingCat

from rope_viz.adapters.base import Adapter, axis_pairs, expand_heads, rope_module
from rope_viz.errors import FamilyError


def is_cat(body) -> bool:
    return isinstance(rope_module(body), RotaryEmbeddingCat)


def has_reference_grid(body) -> bool:
    return is_cat(body) and rope_module(body).ref_feat_shape is not None


class CatRopeAdapter(Adapter):
    """Axial frequencies from RotaryEmbeddingCat's bands, offset `grid_offset` on both axes."""

    def read_freqs(self, body, grid) -> torch.Tensor:
        rope = rope_module(body)
        if rope.grid_type != "index":
            raise FamilyError(f"RotaryEmbeddingCat with a '{rope.grid_type}' grid is not a patch-index RoPE; "
                              "supported: 'index' grids (naver, EVA-02, SBB, Perception Encoder).")
        gh, gw = grid
        scale_y, scale_x = 1.0, 1.0
        if rope.ref_feat_shape is not None:  # indices rescaled onto the reference grid
            ref_h, ref_w = rope.ref_feat_shape
            scale_y, scale_x = ref_h / gh, ref_w / gw
        bands = rope.bands.detach().double().cpu()  # (D/4,) rad per index
        return expand_heads(body, axis_pairs(bands * scale_x, bands * scale_y, rope.grid_indexing))

    def offset(self, body, grid) -> tuple[float, float]:
        offset = float(rope_module(body).grid_offset)  # added to the index before any reference scaling
        return offset, offset
