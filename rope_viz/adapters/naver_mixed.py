"""naver RoPE-Mixed (Heo et al. 2024; timm `vit_*_rope_mixed*_224`): learned 2D frequencies per layer and head."""
import torch
from timm.layers.pos_embed_sincos import RotaryEmbeddingMixed

from rope_viz.adapters.base import Adapter, rope_module


class NaverMixed(Adapter):
    key = "naver_mixed"
    label = "naver RoPE-Mixed"
    kind = "mixed"
    about = "learned 2D frequencies per layer and head (timm RotaryEmbeddingMixed)"

    def matches(self, body) -> bool:
        return isinstance(rope_module(body), RotaryEmbeddingMixed)

    def read_freqs(self, body, grid) -> torch.Tensor:
        freqs = rope_module(body).freqs.detach().float().cpu().permute(1, 2, 3, 0)  # (2, L, H, D/2) -> (L, H, D/2, 2)
        # timm multiplies component 0 by the grid's first coordinate: x for 'xy', the row (y) for 'ij'.
        return (freqs.flip(-1) if rope_module(body).grid_indexing == "ij" else freqs).contiguous()


ADAPTER = NaverMixed()
