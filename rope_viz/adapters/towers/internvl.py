"""InternVL's vision tower (transformers `InternVLVisionModel`, InternViT): no RoPE, a learned absolute table for
CLS and a square patch grid, resampled bicubically (F.interpolate, align_corners False) to other grids.

Tokens are (1, N, C): CLS, then patches row-major, one attention call per image. Where the tower normalises q
(use_qk_norm), logits are scaled at q_norm's output.
"""
from __future__ import annotations

import importlib

import torch

from rope_viz.adapters.towers.base import TowerAdapter, hf_modeling
from rope_viz.errors import FamilyError


class InternVL(TowerAdapter):
    key = "internvl"
    label = "InternVL vision"
    kind = "ape"
    about = "learned absolute position table resampled bicubically to the grid, CLS first, no RoPE"
    own_ape_resampling = True  # F.interpolate bicubic, align_corners False, no antialias; CLS row kept
    model_types = ("internvl", "internvl_vision")
    weight_prefixes = ("vision_tower.", "model.vision_tower.")  # saved (llava's legacy names), in memory

    # -- building
    def build(self, vision_config) -> torch.nn.Module:
        model = hf_modeling("internvl").InternVLVisionModel
        return model._from_config(vision_config, attn_implementation="sdpa").eval()

    def mean_std(self, hf):
        """ImageNet's: InternVL's checkpoints name it in their preprocessor_config.json (GotOcr2ImageProcessor's
        own class default is CLIP's, which InternVL never used)."""
        image_utils = importlib.import_module("transformers.image_utils")
        return tuple(image_utils.IMAGENET_DEFAULT_MEAN), tuple(image_utils.IMAGENET_DEFAULT_STD)

    # -- geometry
    def attentions(self, hf) -> list[torch.nn.Module]:
        return [layer.attention for layer in hf.encoder.layer]

    def patch(self, hf) -> int:
        ph, pw = hf.embeddings.patch_embeddings.patch_size
        if ph != pw:
            raise FamilyError(f"{self.label} towers with {ph} x {pw} px patches are not supported; rope-viz needs "
                              "square patches.")
        return int(ph)

    def train_grid(self, body, module=None) -> tuple[int, int]:
        """The configured image size in patches (448 px / 14 px = 32 x 32), where the table is used unresampled."""
        gh, gw = body.hf.embeddings.patch_embeddings.patch_shape
        return int(gh), int(gw)

    def has_ape(self, body) -> bool:
        return body.hf.embeddings.position_embeddings is not None

    def prefix_tokens(self, body) -> dict[str, int]:
        return {"cls": 1, "registers": 0, "total": 1}

    def q_scale_point(self, attn):
        """q_norm's output (an identity without use_qk_norm): scaling q_proj's output would be normalised away."""
        return attn.q_norm, lambda output, scale: output * scale

    # -- running
    def inputs(self, hf, image: torch.Tensor) -> dict:
        return {"pixel_values": image}

    def token_order(self, hf, grid: tuple[int, int], layer: int | None = None) -> torch.Tensor:
        return torch.arange(1 + grid[0] * grid[1])  # CLS, then raster: rope-viz's own order


ADAPTER = InternVL()
