"""Perception Encoder (Bolya et al. 2025; timm `vit_pe_*`): axial RoPE on a reference grid, offset 1, 'xy'.

timm's port rescales patch indices onto its 24 x 24 reference grid on every grid; the authors' own
code (facebookresearch/perception_models `Rope2D`) rotates integer positions, which is what the
`extrapolate` method computes.
"""
from timm.layers.attention import AttentionRope

from rope_viz.adapters.base import first_attn
from rope_viz.adapters.timm_cat import CatRopeAdapter, has_reference_grid


class PerceptionEncoder(CatRopeAdapter):
    key = "pe"
    label = "Perception Encoder"
    grid_dependent = True
    about = "axial RoPE on indices rescaled to a reference grid, offset 1, 'xy'"
    port_note = ("timm's Perception Encoder rescales patch positions onto its reference grid at every size, "
                 "while the authors' code rotates integer positions; the position method 'extrapolate' gives "
                 "the original's behaviour.")

    def matches(self, body) -> bool:
        return has_reference_grid(body) and isinstance(first_attn(body), AttentionRope)


ADAPTER = PerceptionEncoder()
