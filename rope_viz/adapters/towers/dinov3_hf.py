"""DINOv3 in transformers (`DINOv3ViTModel`, model_type 'dinov3_vit'): axial RoPE on patch centres normalised to
[-1, 1] per axis, half-split pairs, CLS and registers before the patches and never rotated.

Its rotary module maps patch (x, y) to 2 (x + 0.5) / gw - 1 (y likewise with gh) and turns pair j by
2 pi inv_freq_j per unit, a y block of pairs before an x block: w = 4 pi inv_freq / gw rad/patch on x (gh on y)
and the offset is 0.5 - g / 2 per axis, both grid-dependent. Its coordinate augmentations (shift, jitter,
rescale) only run in training mode; towers are built and wrapped in eval mode.
"""
from __future__ import annotations

import importlib
import math

import torch

from rope_viz.adapters.base import axis_pairs
from rope_viz.adapters.towers.base import TowerAdapter, hf_modeling
from rope_viz.rotary import rope2d


class DinoV3HF(TowerAdapter):
    key = "dinov3_hf"
    label = "DINOv3 (transformers)"
    kind = "axial"
    grid_dependent = True
    about = "axial RoPE on patch centres normalised to [-1, 1] per axis, half-split pairs, CLS and registers"
    model_types = ("dinov3_vit",)
    weight_prefixes = ("",)  # the checkpoint is the DINOv3ViTModel itself (no bigger model holds it)

    # -- building
    def build(self, vision_config) -> torch.nn.Module:
        model = hf_modeling("dinov3_vit").DINOv3ViTModel._from_config(vision_config, attn_implementation="sdpa")
        return model.eval()

    def mean_std(self, hf):
        processor = importlib.import_module("transformers.models.dinov3_vit.image_processing_dinov3_vit")
        cls = processor.DINOv3ViTImageProcessor
        return tuple(cls.image_mean), tuple(cls.image_std)

    # -- geometry
    def attentions(self, hf) -> list[torch.nn.Module]:
        return [layer.attention for layer in hf.model.layer]

    # -- running
    def inputs(self, hf, image: torch.Tensor) -> dict:
        return {"pixel_values": image}

    def token_order(self, hf, grid, layer=None) -> torch.Tensor:
        """CLS, registers, then patches row-major: already rope-viz order. Shapes: -> (1 + R + gh * gw,)"""
        return torch.arange(1 + int(hf.config.num_register_tokens) + grid[0] * grid[1])

    # -- rotation
    def read_freqs(self, body, grid) -> torch.Tensor:
        gh, gw = grid
        inv_freq = body.hf.rope_embeddings.inv_freq.detach().double().cpu()  # (D/4,) turns per unit coordinate
        head = axis_pairs(4 * math.pi * inv_freq / gw, 4 * math.pi * inv_freq / gh, "ij")  # y block first
        return head.float().expand(len(self.attentions(body.hf)), self.num_heads(body.hf), -1, -1).contiguous()

    def offset(self, body, grid) -> tuple[float, float]:
        gh, gw = grid
        return 0.5 - gw / 2, 0.5 - gh / 2

    def layout(self, body) -> tuple[str, str]:
        return "ij", "half"

    def prefix_tokens(self, body) -> dict[str, int]:
        registers = int(body.hf.config.num_register_tokens)
        return {"cls": 1, "registers": registers, "total": 1 + registers}

    def build_rotation(self, body, freqs_layer, pos, grid):
        """(cos, sin) over the patches only (the tower leaves the prefix unrotated), each pair's angle on
        features j and j + D/2; per-head where heads differ (they broadcast over q's head dimension).
        Shapes: freqs_layer (H, D/2, 2), pos (P, 2) -> (P, D) each, or (H, P, D)"""
        same = bool((freqs_layer == freqs_layer[:1]).all())
        angles = rope2d.angles(freqs_layer[0] if same else freqs_layer, pos)  # (P, D/2) or (H, P, D/2)
        angles = torch.cat([angles, angles], dim=-1)
        return torch.cos(angles), torch.sin(angles)


ADAPTER = DinoV3HF()
