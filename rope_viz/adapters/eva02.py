"""EVA-02 (Fang et al. 2023; timm `eva02_*`): axial RoPE on indices rescaled to a reference grid, CLS."""
from timm.models.eva import EvaAttention

from rope_viz.adapters.base import first_attn, has_cls, num_registers
from rope_viz.adapters.timm_cat import CatRopeAdapter, has_reference_grid


class Eva02(CatRopeAdapter):
    key = "eva02"
    label = "EVA-02"
    grid_dependent = True
    about = "axial RoPE on indices rescaled to a reference grid, 'ij', CLS token"

    def matches(self, body) -> bool:
        return (has_reference_grid(body) and isinstance(first_attn(body), EvaAttention) and has_cls(body)
                and not num_registers(body))


ADAPTER = Eva02()
