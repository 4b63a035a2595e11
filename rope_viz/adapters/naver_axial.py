"""naver RoPE-Axial (Heo et al. 2024; timm `vit_*_rope*_224`): fixed axial frequencies on integer patches."""
from rope_viz.adapters.timm_cat import CatRopeAdapter, is_cat, has_reference_grid


class NaverAxial(CatRopeAdapter):
    key = "naver_axial"
    label = "naver RoPE-Axial"
    about = "fixed axial frequencies on integer patch indices (timm RotaryEmbeddingCat)"

    def matches(self, body) -> bool:
        return is_cat(body) and not has_reference_grid(body)


ADAPTER = NaverAxial()
