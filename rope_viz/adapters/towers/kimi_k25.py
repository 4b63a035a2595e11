"""Kimi K2.5's vision tower (transformers `Kimi_K25VisionModel`, MoonViT): axial RoPE on integer patch indices,
x and y pairs interleaved (pair 2j turns with x, 2j + 1 with y, both at frequency j) in the half-split channel
layout, shared by every head, plus a learned pos_emb_height x pos_emb_width APE table that the tower resamples
bicubically (align_corners False) to each grid; for a single image it adds no temporal term.

Its tokens are packed (T, C) in raster order, one attention call per image, no CLS. Its pooler merges
kernel_h x kernel_w patches, so image sides must be multiples of patch x kernel.
"""
from __future__ import annotations

import importlib
import re

import torch

from rope_viz.adapters.base import expand_heads
from rope_viz.adapters.calls import one_rotation
from rope_viz.adapters.towers.base import TowerAdapter, TowerCall, hf_modeling
from rope_viz.errors import FamilyError
from rope_viz.rotary import rope2d

BLOCK_RENAMES = {"norm0": "norm1", "norm1": "norm2", "mlp.fc0": "mlp.fc1", "mlp.fc1": "mlp.fc2", "wo": "attn.proj"}


class KimiK25(TowerAdapter):
    key = "kimi_k25"
    label = "Kimi K2.5 vision"
    kind = "axial"
    about = ("axial RoPE on integer patch indices, x and y pairs interleaved (half-split channels), plus a learned "
             "APE table resampled bicubically; raster token order, no CLS")
    own_ape_resampling = True  # bicubic, align_corners False, as a weighted gather over its table
    call = TowerCall("position_embeddings", token_dim=0)  # (cos, sin) (T, D); hidden states packed (T, C)
    model_types = ("kimi_k25", "kimi_k25_vision")
    weight_prefixes = ("vision_tower.", "model.vision_tower.")  # saved (MoonViT names), in memory

    # -- building
    def build(self, vision_config) -> torch.nn.Module:
        model = hf_modeling("kimi_k25").Kimi_K25VisionModel
        return model._from_config(vision_config, attn_implementation="sdpa").eval()

    def convert_weights(self, weights: dict[str, torch.Tensor], vision_config) -> dict[str, torch.Tensor]:
        """Kimi K2.5's checkpoints (and save_pretrained's output) keep MoonViT's layout: `encoder.blocks.N` with
        norm0/norm1, mlp.fc0/fc1, wo and a fused wqkv whose q and k rows pair channels (2j, 2j + 1) per head, as
        complex RoPE does. As transformers' conversion_mapping does on load: rename, split wqkv, and move q and k
        rows to the half-split pairs (j, j + D/2). Names already in transformers' layout pass unchanged."""
        heads, out = int(vision_config.num_attention_heads), {}
        for name, tensor in weights.items():
            name = re.sub(r"^encoder\.", "", name)
            if name == "patch_embed.pos_emb.weight":
                name = "patch_embed.pos_emb.position_embeddings"
            block = re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$", name)
            if block is None:
                out[name] = tensor
                continue
            layer, module, kind = block.groups()
            if module != "wqkv":
                out[f"layers.{layer}.{BLOCK_RENAMES.get(module, module)}.{kind}"] = tensor
                continue
            for part, chunk in zip(("q", "k", "v"), tensor.chunk(3, dim=0)):
                if part != "v":  # (H, D/2, 2, ...) -> (H, 2, D/2, ...): pair j from (2j, 2j + 1) to (j, j + D/2)
                    chunk = chunk.reshape(heads, -1, 2, *chunk.shape[1:]).transpose(1, 2).reshape(chunk.shape)
                out[f"layers.{layer}.attn.{part}_proj.{kind}"] = chunk
        return out

    def mean_std(self, hf):
        processor = importlib.import_module("transformers.models.kimi_k25.image_processing_kimi_k25")
        return tuple(processor.Kimi_K25ImageProcessor.image_mean), tuple(processor.Kimi_K25ImageProcessor.image_std)

    # -- geometry
    def attentions(self, hf) -> list[torch.nn.Module]:
        return [layer.attn for layer in hf.layers]

    def kernel(self, hf) -> tuple[int, int]:
        kh, kw = hf.merge_kernel_size
        return int(kh), int(kw)

    def size_multiple(self, hf) -> int:
        return self.patch(hf) * max(self.kernel(hf))

    def check_image_size(self, body, height: int, width: int) -> None:
        p, (kh, kw) = self.patch(body.hf), self.kernel(body.hf)
        if height % (p * kh) or width % (p * kw):
            raise FamilyError(f"{self.label} merges {kh} x {kw} patches, so image sides must be multiples of "
                              f"{p * kh} x {p * kw} px; {height} x {width} px is not.")

    def train_grid(self, body, module=None) -> tuple[int, int]:
        """The APE table's grid: where the tower adds its table unresampled (64 x 64 patches in Kimi K2.5)."""
        height, width = body.hf.patch_embed.pos_emb.position_embeddings.shape[:2]
        return int(height), int(width)

    def has_ape(self, body) -> bool:
        return True

    def prefix_tokens(self, body) -> dict[str, int]:
        return {"cls": 0, "registers": 0, "total": 0}

    # -- running
    def inputs(self, hf, image: torch.Tensor) -> dict:
        """Patches (T, 3, p, p) in raster order, as Kimi_K25ImageProcessor makes them, and grid_thw (1, gh, gw).
        Shapes: image (1, 3, H, W)"""
        p = self.patch(hf)
        _, c, height, width = image.shape
        gh, gw = height // p, width // p
        patches = image.reshape(c, gh, p, gw, p).permute(1, 3, 0, 2, 4).reshape(gh * gw, c, p, p)
        return {"pixel_values": patches, "grid_thw": torch.tensor([[1, gh, gw]], device=image.device)}

    def token_order(self, hf, grid: tuple[int, int], layer: int | None = None) -> torch.Tensor:
        return torch.arange(grid[0] * grid[1])  # raster, one packed call per image

    # -- rotation
    def read_freqs(self, body, grid) -> torch.Tensor:
        inv_freq = body.hf.rotary_emb.inv_freq.detach().double().cpu()  # (D/4,) rad per index
        zeros = torch.zeros_like(inv_freq)
        x_pairs, y_pairs = torch.stack([inv_freq, zeros], -1), torch.stack([zeros, inv_freq], -1)  # (D/4, 2) each
        return expand_heads(body, torch.stack([x_pairs, y_pairs], dim=1).flatten(0, 1))  # x, y, x, y, ...

    def layout(self, body) -> tuple[str, str]:
        return "xy", "half"

    def build_rotation(self, body, freqs_layer: torch.Tensor, pos: torch.Tensor, grid: tuple[int, int]):
        """(cos, sin) (T, D) in raster order, pair j at channels (j, j + D/2), one rotation for all heads."""
        angle = rope2d.angles(one_rotation(freqs_layer, self.label), pos)  # (T, D/2)
        angle = torch.cat([angle, angle], dim=-1)
        return angle.cos(), angle.sin()


ADAPTER = KimiK25()
