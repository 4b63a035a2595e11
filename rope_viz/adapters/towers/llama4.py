"""Llama 4's vision tower (transformers `Llama4VisionModel`: Llama 4 Scout / Maverick): axial RoPE on 1-based
patch indices (theta 10000), interleaved pairs as complex numbers, a learned absolute table, a CLS token.

Its rotary table `freqs_ci` (complex, (gh * gw + 1, 1, D/2)) is built once for the configured image size: pair
j < D/4 turns by (x + 1) w_j, pair D/4 + j by (y + 1) w_j, pair j being features (2j, 2j+1) (view_as_complex):
layout ('xy', 'interleaved'), offset (1, 1). The CLS token is appended LAST and its row of the table has angle 0,
so it is unrotated; in rope-viz order it comes first. Both the rotary table and the learned position table
(`positional_embedding_vlm`) have exactly one row per patch of the configured grid, so the tower takes that one
image size only. Each attention receives the table as `freqs_ci`, one for every head.
"""
from __future__ import annotations

import copy

import torch

from rope_viz.adapters.calls import one_rotation
from rope_viz.adapters.towers.base import TowerAdapter, TowerCall, hf_modeling
from rope_viz.adapters.towers.pixtral import tower_config
from rope_viz.errors import FamilyError
from rope_viz.rotary import rope2d


def _table(hf) -> torch.Tensor:
    """The rotary table the tower passes to every attention. Shapes: -> (gh * gw + 1, D/2) complex"""
    return hf.rotary_embedding.freqs_ci.detach().cpu()[:, 0]


class Llama4(TowerAdapter):
    key = "llama4"
    label = "Llama 4 vision"
    about = "axial RoPE on 1-based patch indices, interleaved complex pairs, APE and a last CLS; one image size"
    call = TowerCall("freqs_ci")
    model_types = ("llama4", "llama4_vision_model")
    weight_prefixes = ("vision_model.",)  # Llama4ForConditionalGeneration keeps the tower at its top level

    def vision_config(self, config):
        return tower_config(self, config, ("llama4_vision_model",))

    def build(self, vision_config) -> torch.nn.Module:
        model = hf_modeling("llama4").Llama4VisionModel
        return model._from_config(copy.deepcopy(vision_config), attn_implementation="sdpa").eval()

    def mean_std(self, hf):
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # Llama4ImageProcessor's defaults

    def attentions(self, hf) -> list[torch.nn.Module]:
        return [layer.self_attn for layer in hf.model.layers]

    def check_image_size(self, body, height: int, width: int) -> None:
        side = int(body.hf.config.image_size)
        if (height, width) != (side, side):
            raise FamilyError(f"{self.label} takes only its configured {side} x {side} px image (its rotary and "
                              f"position tables are fixed to that grid); {height} x {width} px is not.")

    def has_ape(self, body) -> bool:
        return getattr(body.hf, "positional_embedding_vlm", None) is not None

    def inputs(self, hf, image: torch.Tensor) -> dict:
        """The tower's own output is its pixel-shuffled projector input, so the blocks' hidden states are asked
        for too. Shapes: image (1, 3, H, W)"""
        return {"pixel_values": image, "output_hidden_states": True}

    def last_hidden(self, hf, output) -> torch.Tensor:
        """The last block's output (before layernorm_post and the pixel shuffle). Shapes: -> (gh * gw + 1, C)"""
        return output.hidden_states[-1][0]

    def token_order(self, hf, grid, layer=None) -> torch.Tensor:
        """Patches row-major, then CLS: patch i is rope-viz token i + 1, CLS is 0. Shapes: -> (gh * gw + 1,)"""
        patches = grid[0] * grid[1]
        return torch.cat([torch.arange(1, patches + 1), torch.zeros(1, dtype=torch.long)])

    def read_freqs(self, body, grid) -> torch.Tensor:
        """Read off the tower's own table: w_j = the turn of pair j from patch (0, 0) to (1, 0) and to (0, 1)."""
        table = _table(body.hf).to(torch.complex128)  # (P + 1, D/2)
        gw = self.train_grid(body)[1]
        w = torch.stack([(table[1] * table[0].conj()).angle(), (table[gw] * table[0].conj()).angle()], -1)
        return w.float().expand(len(self.attentions(body.hf)), self.num_heads(body.hf), -1, -1).contiguous()

    def offset(self, body, grid) -> tuple[float, float]:
        return 1.0, 1.0  # the table rotates patch (x, y) by its 1-based indices (x + 1, y + 1)

    def layout(self, body) -> tuple[str, str]:
        return "xy", "interleaved"

    def prefix_tokens(self, body) -> dict[str, int]:
        return {"cls": 1, "registers": 0, "total": 1}

    def build_rotation(self, body, freqs_layer, pos, grid):
        """The complex table for these frequencies: patches row-major, then CLS at angle 0.
        Shapes: freqs_layer (H, D/2, 2), pos (gh * gw, 2) raster -> (gh * gw + 1, 1, D/2) complex64"""
        angles = rope2d.angles(one_rotation(freqs_layer, self.label), pos)  # (P, D/2)
        patches = torch.polar(torch.ones_like(angles), angles)
        cls = torch.ones(1, angles.shape[-1], dtype=patches.dtype)
        return torch.cat([patches, cls])[:, None, :]


ADAPTER = Llama4()
