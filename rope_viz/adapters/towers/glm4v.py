"""GLM-4V's vision tower (transformers `Glm4vVisionModel`, also GLM-4.6V's): axial RoPE on integer patch
indices, a y block then an x block of half-split pairs, shared by every head, plus a learned square APE table
that the tower resamples bicubically (grid_sample, align_corners False, border padding) to each grid.

Its tokens are packed (T, C) in 2 x 2 merge-block order (blocks row-major, the block's patches row-major inside),
one attention call per image; image sides must be multiples of patch x merge. Its output keeps only the merged
tokens, so the per-patch tokens rope-viz shows are the input of its downsampler (post_layernorm's output).
"""
from __future__ import annotations

import importlib
import threading

import torch

from rope_viz.adapters.base import axis_pairs, expand_heads
from rope_viz.adapters.calls import one_rotation
from rope_viz.adapters.towers.base import TowerAdapter, TowerCall, hf_modeling
from rope_viz.rotary import rope2d


def merge_block_order(grid: tuple[int, int], merge: int) -> torch.Tensor:
    """Each packed token's raster index when tokens go merge x merge block by block (blocks row-major, patches
    row-major inside a block), as transformers' get_vision_position_ids lays them out. Shapes: -> (gh * gw,) long"""
    gh, gw = grid
    raster = torch.arange(gh * gw).view(gh // merge, merge, gw // merge, merge)
    return raster.permute(0, 2, 1, 3).flatten()


class Glm4v(TowerAdapter):
    key = "glm4v"
    label = "GLM-4V vision"
    kind = "axial"
    about = ("axial RoPE on integer patch indices, y block then x block of half-split pairs, plus a learned APE "
             "table resampled bicubically; 2 x 2 merge-block token order, no CLS")
    own_ape_resampling = True  # bicubic grid_sample of its square table, align_corners False, border padding
    call = TowerCall("position_embeddings", token_dim=0)  # (cos, sin) (T, D); hidden states packed (T, C)
    model_types = ("glm4v", "glm46v", "glm4v_vision")
    weight_prefixes = ("model.visual.",)

    # -- building
    def build(self, vision_config) -> torch.nn.Module:
        model = hf_modeling("glm4v").Glm4vVisionModel
        return model._from_config(vision_config, attn_implementation="sdpa").eval()

    def mean_std(self, hf):
        processing = importlib.import_module("transformers.models.glm4v.image_processing_pil_glm4v")
        return tuple(processing.Glm4vImageProcessorPil.image_mean), tuple(processing.Glm4vImageProcessorPil.image_std)

    # -- geometry
    def attentions(self, hf) -> list[torch.nn.Module]:
        return [block.attn for block in hf.blocks]

    def merge(self, hf) -> int:
        return int(hf.config.spatial_merge_size)

    def size_multiple(self, hf) -> int:
        return self.patch(hf) * self.merge(hf)

    def train_grid(self, body, module=None) -> tuple[int, int]:
        """The APE table's side: the grid on which the tower adds its table unresampled (24 x 24 for 336 px)."""
        side = round(body.hf.embeddings.position_embedding.num_embeddings ** 0.5)
        return side, side

    def has_ape(self, body) -> bool:
        return True

    def prefix_tokens(self, body) -> dict[str, int]:
        return {"cls": 0, "registers": 0, "total": 0}

    # -- running
    def inputs(self, hf, image: torch.Tensor) -> dict:
        """Flattened patches as Glm4vImageProcessor makes them: merge-block order, each patch (C, t, p, p) with
        the image repeated over the temporal patch, and grid_thw (1, gh, gw). Shapes: image (1, 3, H, W)"""
        p, m, t = self.patch(hf), self.merge(hf), int(hf.config.temporal_patch_size)
        _, c, height, width = image.shape
        gh, gw = height // p, width // p
        patches = image.reshape(1, c, gh // m, m, p, gw // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
        patches = patches.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, t, -1, -1).reshape(gh * gw, c * t * p * p)
        return {"hidden_states": patches, "grid_thw": torch.tensor([[1, gh, gw]], device=image.device)}

    def last_tokens(self, hf, image: torch.Tensor) -> torch.Tensor:
        """post_layernorm's output (what the downsampler merges), kept by a hook for this forward only."""
        kept, owner = [], threading.get_ident()

        def keep(module, args, output):
            if threading.get_ident() == owner and not kept:
                kept.append(output)

        handle = hf.post_layernorm.register_forward_hook(keep)
        try:
            hf(**self.inputs(hf, image))
        finally:
            handle.remove()
        return kept[0]

    def token_order(self, hf, grid: tuple[int, int], layer: int | None = None) -> torch.Tensor:
        return merge_block_order(grid, self.merge(hf))  # every layer and the output: one packed call per image

    # -- rotation
    def read_freqs(self, body, grid) -> torch.Tensor:
        inv_freq = body.hf.rotary_pos_emb.inv_freq.detach().double().cpu()  # (D/4,) rad per index
        return expand_heads(body, axis_pairs(inv_freq, inv_freq, "ij"))  # position ids are (h, w): y block first

    def layout(self, body) -> tuple[str, str]:
        return "ij", "half"

    def build_rotation(self, body, freqs_layer: torch.Tensor, pos: torch.Tensor, grid: tuple[int, int]):
        """(cos, sin) (T, D) in merge-block order, pair j at channels (j, j + D/2), one rotation for all heads."""
        angle = rope2d.angles(one_rotation(freqs_layer, self.label), pos)[merge_block_order(grid, self.merge(body.hf))]  # (T, D/2)
        angle = torch.cat([angle, angle], dim=-1)
        return angle.cos(), angle.sin()


ADAPTER = Glm4v()
