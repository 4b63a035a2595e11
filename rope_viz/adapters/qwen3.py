"""Qwen3-VL's vision tower in timm (`qwen3_vit_*_enc`, classifier `qwen3_vit_*`): a learned 48 x 48 APE
(resampled bilinearly, align_corners, to each grid) plus axial RoPE on integer patch indices (theta
10000, 'ij'), half-split pairs, no CLS. Its projector merges 2 x 2 patches, so the `_enc` model needs
grids divisible by the merge size; tokens in the blocks stay in raster order.
"""
from timm.models.qwen3_vit import Qwen3VitEncoder

from rope_viz.adapters.base import patch_size
from rope_viz.adapters.timm_cat import CatRopeAdapter, is_cat
from rope_viz.errors import FamilyError


class Qwen3(CatRopeAdapter):
    key = "qwen3"
    label = "Qwen3-VL ViT"
    about = "learned 48 x 48 APE plus axial RoPE on integer patch indices, half-split pairs, no CLS"
    any_size = True  # takes any grid by itself (no dynamic_img_size argument)
    own_ape_resampling = True  # bilinear, align_corners=True, in its own _pos_embed

    def matches(self, body) -> bool:
        return isinstance(body, Qwen3VitEncoder) and is_cat(body)

    def check_image_size(self, body, height: int, width: int) -> None:
        merger = getattr(body, "merger", None)
        if merger is None:
            return
        ph, pw = patch_size(body)
        k = merger.merge_size
        if (height // ph) % k or (width // pw) % k:
            raise FamilyError(f"This encoder merges {k} x {k} patches, so the image size must be a multiple of "
                              f"{k * ph} px; {height} x {width} px is not.")


ADAPTER = Qwen3()
