"""timm's SBB RoPE ViTs (`vit_*_rope_reg*_gap_*`): axial RoPE on a reference grid, register tokens."""
from timm.models.eva import EvaAttention

from rope_viz.adapters.base import first_attn
from rope_viz.adapters.timm_cat import CatRopeAdapter, has_reference_grid


class Sbb(CatRopeAdapter):
    key = "sbb"
    label = "timm SBB RoPE"
    grid_dependent = True
    about = "axial RoPE on indices rescaled to a reference grid, register tokens"

    def matches(self, body) -> bool:
        return has_reference_grid(body) and isinstance(first_attn(body), EvaAttention)


ADAPTER = Sbb()
