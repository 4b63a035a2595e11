"""MLCD's vision tower (transformers `MLCDVisionModel`, DeepGlint's MLCD ViTs): axial RoPE on integer patch
indices (theta 10000), half-split pairs, and a CLS token first whose rotation is LEARNED.

Its rotary embedding keeps w_i = theta^(-4i/D), i < D/4, in `inv_freq`; cos/sin put the row y on the first D/4
pairs and the column x on the next D/4, repeated over both halves of the head (rotate_half: pair j is
(j, j + D/2)): layout ('ij', 'half'). Any image whose sides are whole patches, square or not.

What does not fit rope-viz's model: the CLS token is not left unrotated but turned by `class_pos_emb`, D/2
learned angles of its own (no position p gives them as w . p). rope-viz still counts it as the prefix token;
its q and k are captured as the tower rotates them, and every position method keeps the CLS at its learned
angles while it moves the patches (build_rotation), so CLS-patch logits follow the tower's own CLS.
"""
from __future__ import annotations

import copy

import torch

from rope_viz.adapters.base import axis_pairs, expand_heads
from rope_viz.adapters.calls import one_rotation
from rope_viz.adapters.towers.base import TowerAdapter, hf_modeling
from rope_viz.adapters.towers.pixtral import CLIP_MEAN, CLIP_STD, half_cos_sin, tower_config
from rope_viz.rotary import rope2d


class MLCD(TowerAdapter):
    key = "mlcd"
    label = "MLCD vision"
    about = "axial RoPE on integer (row, column) indices, half pairs, a CLS with its own learned rotation"
    model_types = ("llava", "mlcd", "mlcd_vision_model")  # a LLaVA around it, DeepGlint's towers, the tower
    weight_prefixes = ("vision_tower.", "model.vision_tower.", "vision_model.")  # LLaVA; DeepGlint's towers

    def vision_config(self, config):
        return tower_config(self, config, ("mlcd_vision_model", "mlcd"))

    def build(self, vision_config) -> torch.nn.Module:
        model = hf_modeling("mlcd").MLCDVisionModel
        return model._from_config(copy.deepcopy(vision_config), attn_implementation="sdpa").eval()

    def mean_std(self, hf):
        return CLIP_MEAN, CLIP_STD  # MLCD's CLIPImageProcessor

    def attentions(self, hf) -> list[torch.nn.Module]:
        return [layer.self_attn for layer in hf.encoder.layers]

    def inputs(self, hf, image: torch.Tensor) -> dict:
        return {"pixel_values": image}

    def token_order(self, hf, grid, layer=None) -> torch.Tensor:
        """CLS, then patches row-major: rope-viz's own order. Shapes: -> (gh * gw + 1,)"""
        return torch.arange(grid[0] * grid[1] + 1)

    def read_freqs(self, body, grid) -> torch.Tensor:
        inv_freq = body.hf.vision_rotary_embedding.inv_freq.detach().double().cpu()  # (D/4,)
        return expand_heads(body, axis_pairs(inv_freq, inv_freq, "ij"))  # y block first

    def layout(self, body) -> tuple[str, str]:
        return "ij", "half"

    def prefix_tokens(self, body) -> dict[str, int]:
        return {"cls": 1, "registers": 0, "total": 1}

    def build_rotation(self, body, freqs_layer, pos, grid):
        """(cos, sin) for these frequencies, the CLS row at the tower's own learned angles.
        Shapes: freqs_layer (H, D/2, 2), pos (gh * gw, 2) raster -> cos, sin (gh * gw + 1, D)"""
        head = one_rotation(freqs_layer, self.label)
        cls = body.hf.class_pos_emb.detach().float().cpu()  # (1, D/2) learned angles
        angles = torch.cat([cls, rope2d.angles(head, pos)])  # (P + 1, D/2)
        return half_cos_sin(angles)


ADAPTER = MLCD()
