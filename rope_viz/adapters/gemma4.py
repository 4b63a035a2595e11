"""Gemma 4's vision encoder (timm `gemma4_vit_*`): integer (x, y) axial RoPE, an x block then a y block
of half-split pairs ('axis-half'), (cos, sin) passed to each attention, a learned table per axis.

Its soft-token pool takes k x k patches, so both image sides must be multiples of k patches.
"""
from __future__ import annotations

import torch
from timm.models.gemma4_vit import Gemma4Attention, Gemma4RotaryEmbedding2D

from rope_viz.adapters.base import Adapter, axis_pairs, expand_heads, first_attn, patch_size
from rope_viz.adapters.calls import ROPE_COS_SIN
from rope_viz.errors import FamilyError


class Gemma4(Adapter):
    key = "gemma4"
    label = "Gemma4"
    about = ("axial RoPE on integer (x, y) patch indices, x block then y block of half-split pairs, "
             "plus a per-axis learned table")
    call = ROPE_COS_SIN
    any_size = True

    def matches(self, body) -> bool:
        return (isinstance(getattr(body, "rotary_emb", None), Gemma4RotaryEmbedding2D)
                and isinstance(first_attn(body), Gemma4Attention))

    def read_freqs(self, body, grid) -> torch.Tensor:
        inv_freq = body.rotary_emb.inv_freq.detach().double().cpu()  # (D/4,) rad per index
        return expand_heads(body, axis_pairs(inv_freq, inv_freq, "xy"))  # x block first: position ids are (x, y)

    def layout(self, body) -> tuple[str, str]:
        return "xy", "axis-half"

    def has_ape(self, body) -> bool:
        return getattr(body.patch_embed, "position_embedding_table", None) is not None

    def check_image_size(self, body, height: int, width: int) -> None:
        pool = getattr(body, "pooling_kernel_size", 0)
        if getattr(body, "global_pool", None) != "soft" or not pool:
            return
        ph, pw = patch_size(body)
        if height % (pool * ph) or width % (pool * pw):
            raise FamilyError(f"This encoder pools {pool} x {pool} patches into soft tokens, so the image size must "
                              f"be a multiple of {pool * ph} px; {height} x {width} px is not.")


ADAPTER = Gemma4()
