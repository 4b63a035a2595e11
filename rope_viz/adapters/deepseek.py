"""DeepSeek's vision tower in timm (`deepseek_vit_*_enc`, classifier `deepseek_vit_*`): axial RoPE on
integer patch indices (theta 10000, 'ij'), half-split pairs, no APE and no CLS; its aligner pads the
grid to multiples of 3 after the blocks, so any grid runs.
"""
from timm.models.deepseek_vit import DeepseekVitEncoder

from rope_viz.adapters.timm_cat import CatRopeAdapter, is_cat


class DeepSeek(CatRopeAdapter):
    key = "deepseek"
    label = "DeepSeek ViT"
    about = "axial RoPE on integer patch indices, half-split pairs, no APE, no CLS"
    any_size = True  # takes any grid by itself (no dynamic_img_size argument)

    def matches(self, body) -> bool:
        return isinstance(body, DeepseekVitEncoder) and is_cat(body)


ADAPTER = DeepSeek()
