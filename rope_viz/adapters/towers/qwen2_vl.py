"""Qwen2-VL's vision tower (transformers `Qwen2VisionTransformerPretrainedModel`): axial RoPE on integer patch
indices, rows (h) on the first quarter of the head's pairs and columns (w) on the second, one inverse-frequency
ladder for both (theta 10000 over D/4 pairs), rotate-half pairs (j, j + D/2), no CLS, no absolute table.

The image processor flattens patches in 2 x 2 merge-block order (block by block, row-major, and row-major
inside a block), each patch repeated temporal_patch_size times as a still video frame; the blocks keep that
order, so a token's internal index is its merge block's index times 4 plus its place in the block. Every
attention sees the whole image (one call per image) and receives (cos, sin) of shape (T, D), shared by the
heads, on the packed hidden states (T, C). Qwen2.5-VL and Qwen3-VL (qwen2_5_vl.py, qwen3_vl.py) build on it.
"""
from __future__ import annotations

import copy
import importlib

import torch

from rope_viz.adapters.base import axis_pairs
from rope_viz.adapters.calls import one_rotation
from rope_viz.adapters.towers.base import TowerAdapter, TowerCall, hf_modeling
from rope_viz.errors import FamilyError
from rope_viz.rotary import rope2d


def merge_order(grid: tuple[int, int], merge: int) -> torch.Tensor:
    """The raster index of each token in merge-block order: blocks of merge x merge patches row-major, and
    row-major inside each block. Shapes: -> (gh * gw,) long"""
    gh, gw = grid
    raster = torch.arange(gh * gw).reshape(gh // merge, merge, gw // merge, merge)  # (bh, r, bw, c)
    return raster.permute(0, 2, 1, 3).flatten()  # (bh, bw, r, c)


class Qwen2VL(TowerAdapter):
    key = "qwen2_vl"
    label = "Qwen2-VL vision"
    about = ("axial RoPE on integer patch indices, rows then columns of rotate-half pairs, tokens in 2 x 2 "
             "merge-block order, any size that is a multiple of patch x merge")
    kind = "axial"
    call = TowerCall("position_embeddings", token_dim=0)  # packed hidden states (T, C)
    model_types = ("qwen2_vl", "qwen2_vl_vision")
    weight_prefixes = ("model.visual.", "visual.")  # save_pretrained: Qwen3-VL the first, Qwen2/2.5-VL the second
    model_type = "qwen2_vl"  # transformers' module
    tower_class = "Qwen2VisionTransformerPretrainedModel"
    image_processor = ("qwen2_vl", "Qwen2VLImageProcessor")  # (module, class) whose defaults give mean/std

    # -- building
    def build(self, vision_config) -> torch.nn.Module:
        cls = getattr(hf_modeling(self.model_type), self.tower_class)
        return cls._from_config(copy.deepcopy(vision_config), attn_implementation="sdpa").eval()

    def mean_std(self, hf):
        module, name = self.image_processor
        processor = getattr(importlib.import_module(f"transformers.models.{module}.image_processing_{module}"), name)
        return tuple(processor.image_mean), tuple(processor.image_std)

    # -- geometry
    def attentions(self, hf) -> list[torch.nn.Module]:
        return [block.attn for block in hf.blocks]

    def num_heads(self, hf) -> int:
        return int(hf.config.num_heads)

    def width(self, hf) -> int:
        return int(hf.config.embed_dim)  # hidden_size is the language model's width

    def merge(self, hf) -> int:
        return int(hf.config.spatial_merge_size)

    def size_multiple(self, hf) -> int:
        return self.patch(hf) * self.merge(hf)

    def prefix_tokens(self, body) -> dict[str, int]:
        return {"cls": 0, "registers": 0, "total": 0}

    # -- running
    def inputs(self, hf, image: torch.Tensor) -> dict:
        """Flattened patches in merge-block order, as Qwen2VLImageProcessor.patchify lays them out (channel,
        then temporal_patch_size copies of the still image, then the patch's pixels), and grid_thw.
        Shapes: image (1, 3, H, W) -> hidden_states (gh * gw, 3 * t * p * p), grid_thw (1, 3)"""
        _, C, H, W = image.shape
        p, m, t = self.patch(hf), self.merge(hf), int(hf.config.temporal_patch_size)
        gh, gw = H // p, W // p
        patches = image.reshape(1, C, gh // m, m, p, gw // m, m, p)
        patches = patches.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (1, bh, bw, r, c, C, p, p)
        patches = patches.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, t, -1, -1)  # (1, bh, bw, r, c, C, t, p, p)
        return {"hidden_states": patches.reshape(gh * gw, C * t * p * p),
                "grid_thw": torch.tensor([[1, gh, gw]], device=image.device)}

    def token_order(self, hf, grid: tuple[int, int], layer: int | None = None) -> torch.Tensor:
        return merge_order(grid, self.merge(hf))

    # -- rotation
    def inv_freq(self, body) -> torch.Tensor:
        """The tower's one inverse-frequency ladder in rad per index. Shapes: -> (D/4,)"""
        rotary = body.hf.rotary_pos_emb
        if float(getattr(rotary, "attention_scaling", 1.0)) != 1.0:
            raise FamilyError(f"This {self.label} tower scales its cos and sin, which is not a rotation.")
        return rotary.inv_freq.detach().double().cpu()

    def read_freqs(self, body, grid) -> torch.Tensor:
        inv = self.inv_freq(body)
        head = axis_pairs(inv, inv, "ij")  # (D/2, 2): rows (h) on the first D/4 pairs, columns (w) after
        return head.float().expand(len(self.attentions(body.hf)), self.num_heads(body.hf), -1, -1).contiguous()

    def layout(self, body) -> tuple[str, str]:
        return "ij", "half"

    def build_rotation(self, body, freqs_layer: torch.Tensor, pos: torch.Tensor, grid: tuple[int, int]):
        """(cos, sin) in the tower's internal order, each (T, D) with pair j's angle at j and j + D/2, as its
        rotary embedding returns them. Shapes: freqs_layer (H, D/2, 2), pos (gh * gw, 2) raster"""
        angles = rope2d.angles(one_rotation(freqs_layer, self.label), pos)[self.token_order(body.hf, grid, 0)]  # (T, D/2) internal order
        angles = torch.cat([angles, angles], dim=-1)  # (T, D)
        return angles.cos(), angles.sin()


ADAPTER = Qwen2VL()
