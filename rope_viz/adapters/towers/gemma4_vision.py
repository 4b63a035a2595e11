"""Gemma 4's vision encoder in transformers (`Gemma4VisionModel`, model_types 'gemma4' / 'gemma4_vision'): axial
RoPE on integer (x, y) patch indices, an x block then a y block of half-split pairs ('axis-half', the H-H-W-W
halves of its rotary module, whose 'h' half reads position id 0 = x), a learned table per axis, no prefix tokens.

Its input is flattened patches (channels last) with their (x, y) ids, pixels in [0, 1]. q and k are RMS-normed
after their projections, so logits are scaled at q_norm's output. Its forward pools k x k patches into soft
tokens after the last block, so rope-viz runs the part before the pooling (patch embedder, then encoder) to get
one token per patch; image sides must be multiples of k patches for the pooling.
"""
from __future__ import annotations

import importlib
import math

import torch

from rope_viz.adapters.base import axis_pairs
from rope_viz.adapters.calls import one_rotation
from rope_viz.adapters.towers.base import TowerAdapter, hf_modeling
from rope_viz.errors import FamilyError
from rope_viz.rotary import rope2d


def _processor():
    return importlib.import_module("transformers.models.gemma4.image_processing_gemma4").Gemma4ImageProcessor


class Gemma4Vision(TowerAdapter):
    key = "gemma4_vision"
    label = "Gemma 4 vision tower"
    kind = "axial"
    about = "axial RoPE on integer (x, y) patch indices, x block then y block of half-split pairs, per-axis table"
    own_ape_resampling = True  # one learned row per x index and per y index, looked up (never resampled)
    model_types = ("gemma4", "gemma4_vision")
    weight_prefixes = ("model.vision_tower.",)

    # -- building
    def build(self, vision_config) -> torch.nn.Module:
        model = hf_modeling("gemma4").Gemma4VisionModel._from_config(vision_config, attn_implementation="sdpa")
        return model.eval()

    def mean_std(self, hf):
        return tuple(_processor().image_mean), tuple(_processor().image_std)

    # -- geometry
    def attentions(self, hf) -> list[torch.nn.Module]:
        return [layer.self_attn for layer in hf.encoder.layers]

    def size_multiple(self, hf) -> int:
        return self.patch(hf) * int(hf.config.pooling_kernel_size)

    def train_grid(self, body, module=None) -> tuple[int, int]:
        """The processor's default budget for a square image: the largest multiple of k patches per side whose
        pooled soft tokens fit max_soft_tokens (280 soft tokens, k = 3: 48 x 48 patches), within its position table."""
        k = int(body.hf.config.pooling_kernel_size)
        rows = int(body.hf.config.position_embedding_size) // k * k  # never past its position table
        side = min(math.isqrt(int(_processor().max_soft_tokens)) * k, rows)
        return side, side

    def has_ape(self, body) -> bool:
        return getattr(body.hf.patch_embedder, "position_embedding_table", None) is not None

    def check_image_size(self, body, height: int, width: int) -> None:
        super().check_image_size(body, height, width)
        limit = int(body.hf.config.position_embedding_size) * self.patch(body.hf)
        if height > limit or width > limit:
            raise FamilyError(f"{self.label} has position rows for sides up to {limit} px; "
                              f"{height} x {width} px is larger.")

    # -- running
    def inputs(self, hf, image: torch.Tensor) -> dict:
        """Flattened patches (p, p, 3 channels last, as its processor's convert_image_to_patches) and (x, y) ids.
        Shapes: image (1, 3, H, W) -> pixel_values (1, P, 3 p^2), pixel_position_ids (1, P, 2) long"""
        p = self.patch(hf)
        _, c, height, width = image.shape
        gh, gw = height // p, width // p
        patches = image[0].reshape(c, gh, p, gw, p).permute(1, 3, 2, 4, 0).reshape(gh * gw, p * p * c)
        ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        ids = torch.stack([xs.flatten(), ys.flatten()], dim=-1).to(image.device)
        return {"pixel_values": patches[None], "pixel_position_ids": ids[None]}

    def run(self, hf, image: torch.Tensor):
        """Gemma4VisionModel.forward up to its pooler: the patch embedder, then the encoder (one token per patch)."""
        kwargs = self.inputs(hf, image)
        ids = kwargs["pixel_position_ids"]
        padding = (ids == -1).all(dim=-1)
        embeds = hf.patch_embedder(kwargs["pixel_values"], ids, padding)
        return hf.encoder(inputs_embeds=embeds, attention_mask=~padding, pixel_position_ids=ids)

    def token_order(self, hf, grid, layer=None) -> torch.Tensor:
        """Patches row-major, as its processor lays them out. Shapes: -> (gh * gw,)"""
        return torch.arange(grid[0] * grid[1])

    # -- rotation
    def read_freqs(self, body, grid) -> torch.Tensor:
        inv_freq = body.hf.encoder.rotary_emb.inv_freq.detach().double().cpu()  # (D/4,) rad per index
        head = axis_pairs(inv_freq, inv_freq, "xy")  # x block first: position id 0 is x
        return head.float().expand(len(self.attentions(body.hf)), self.num_heads(body.hf), -1, -1).contiguous()

    def layout(self, body) -> tuple[str, str]:
        return "xy", "axis-half"

    def prefix_tokens(self, body) -> dict[str, int]:
        return {"cls": 0, "registers": 0, "total": 0}

    def q_scale_point(self, attn):
        """q is RMS-normed after q_proj, which would undo a scale there: scale q_norm's output (before RoPE)."""
        return attn.q_norm, lambda output, scale: output * scale

    def build_rotation(self, body, freqs_layer, pos, grid):
        """(cos, sin) as its rotary module returns them: angles of pairs j < D/4 on features j and j + D/4 (the
        x half), the others likewise in the y half. One rotation for all heads (it broadcasts over them).
        Shapes: freqs_layer (H, D/2, 2), pos (P, 2) -> (1, P, D) each"""
        blocks = rope2d.angles(one_rotation(freqs_layer, self.label), pos).unflatten(-1, (2, -1))  # (P, 2, D/4): x half, y half
        angles = torch.cat([blocks, blocks], dim=-1).flatten(-2)[None]  # (1, P, D)
        return torch.cos(angles), torch.sin(angles)


ADAPTER = Gemma4Vision()
