"""Pixtral's vision tower (transformers `PixtralVisionModel`: Pixtral-12B, Mistral Small 3.x): axial RoPE on
integer patch indices (theta 10000), no CLS, any image whose sides are whole patches, square or not.

Its rotary embedding computes w_i = theta^(-2i/D) for i < D/2 and keeps them split even/odd in its `inv_freq`
buffer: the even ones (the buffer's first D/4) turn with the row y, the odd ones (the next D/4) with the column x;
cos/sin are repeated over both halves of the head (rotate_half), so pair j is (j, j + D/2): layout ('ij', 'half').
Patches are row-major (several images would be packed one after another behind a block mask; rope-viz runs
one image). Each attention receives `position_embeddings` = (cos, sin), (T, D) shared by every head; a (H, T, D)
pair broadcasts the same way, so per-head frequencies need no special case.
"""
from __future__ import annotations

import copy

import torch

from rope_viz.adapters.base import axis_pairs, expand_heads
from rope_viz.adapters.towers.base import TowerAdapter, hf_modeling
from rope_viz.errors import FamilyError
from rope_viz.rotary import rope2d

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # PixtralImageProcessor's image_mean / image_std (OpenAI CLIP's)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def tower_config(adapter: TowerAdapter, config, model_types: tuple[str, ...]):
    """The tower's config from a full VLM's (`vision_config`) or its own; FamilyError when it is another tower
    (a LLaVA config may hold a CLIP tower, for instance)."""
    vision = getattr(config, "vision_config", None) or config
    found = getattr(vision, "model_type", None)
    if found not in model_types:
        raise FamilyError(f"{adapter.label} expects a {model_types[0]!r} vision config, not {found!r}.")
    return vision


def half_cos_sin(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of rotate_half's layout: pair j's angle at features j and j + D/2.

    Shapes: angles (..., T, D/2) -> cos, sin (..., T, D)"""
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos(), emb.sin()


class Pixtral(TowerAdapter):
    key = "pixtral"
    label = "Pixtral vision"
    about = "axial RoPE on integer (row, column) indices, even/odd frequencies split between y and x, half pairs"
    model_types = ("llava", "mistral3", "pixtral")  # Pixtral-12B (LLaVA), Mistral Small 3.1 / 3.2, the tower
    weight_prefixes = ("vision_tower.", "model.vision_tower.")  # LLaVA as saved on disk; its module path

    def vision_config(self, config):
        return tower_config(self, config, ("pixtral",))

    def build(self, vision_config) -> torch.nn.Module:
        model = hf_modeling("pixtral").PixtralVisionModel
        return model._from_config(copy.deepcopy(vision_config), attn_implementation="sdpa").eval()

    def mean_std(self, hf):
        return CLIP_MEAN, CLIP_STD

    def attentions(self, hf) -> list[torch.nn.Module]:
        return [layer.attention for layer in hf.transformer.layers]

    def inputs(self, hf, image: torch.Tensor) -> dict:
        """Shapes: image (1, 3, H, W) -> pixel_values (1, 3, H, W), image_sizes (1, 2) [[H, W]]"""
        return {"pixel_values": image, "image_sizes": torch.tensor([list(image.shape[-2:])])}

    def token_order(self, hf, grid, layer=None) -> torch.Tensor:
        """Patches row-major in every layer and in the output: the identity. Shapes: -> (gh * gw,)"""
        return torch.arange(grid[0] * grid[1])

    def read_freqs(self, body, grid) -> torch.Tensor:
        inv_freq = body.hf.patch_positional_embedding.inv_freq.detach().double().cpu()  # (D/2,): even, then odd
        quarter = inv_freq.numel() // 2
        return expand_heads(body, axis_pairs(inv_freq[quarter:], inv_freq[:quarter], "ij"))  # y block first

    def layout(self, body) -> tuple[str, str]:
        return "ij", "half"

    def prefix_tokens(self, body) -> dict[str, int]:
        return {"cls": 0, "registers": 0, "total": 0}

    def build_rotation(self, body, freqs_layer, pos, grid):
        """(cos, sin) as the tower builds them, in its dtype: (T, D), or (H, T, D) where heads differ.
        Shapes: freqs_layer (H, D/2, 2), pos (gh * gw, 2) raster"""
        angles = rope2d.angles(freqs_layer, pos)  # (H, P, D/2)
        if bool((freqs_layer == freqs_layer[:1]).all()):
            angles = angles[0]  # (P, D/2): the tower's own form
        dtype = body.hf.patch_conv.weight.dtype
        return tuple(t.to(dtype) for t in half_cos_sin(angles))


ADAPTER = Pixtral()
