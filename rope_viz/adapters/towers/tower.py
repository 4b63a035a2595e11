"""A Hugging Face vision tower wearing the face rope-viz reads from a timm ViT.

rope-viz's measures read a body's `blocks[i].attn` (with `num_heads`), `embed_dim`, `patch_embed.patch_size`,
`num_prefix_tokens`, `forward_features(images)` and `forward(images)`. A `Tower` gives exactly that over any
transformers vision model, through its adapter (rope_viz.adapters.towers.base.TowerAdapter), so pages,
position methods and statistics need no Hugging Face branch. Tokens always come out in rope-viz order:
prefix tokens (CLS, registers) first, then patches row-major, whatever order the tower keeps them in.

transformers itself is never imported here: a Tower only wraps a module that is already built.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PatchInfo:
    """What rope-viz reads of timm's patch_embed: patch_size (ph, pw) in pixels; no fixed grid."""

    patch_size: tuple[int, int]
    grid_size: None = None


class BlockView:
    """One transformer block as rope-viz sees it: `.attn`, the tower's own attention module."""

    def __init__(self, attn: torch.nn.Module):
        self.attn = attn


class Tower(torch.nn.Module):
    """A transformers vision model (`.hf`) with timm's face; `adapter` is its TowerAdapter.

    mean, std: the tower's own image processor's normalisation (RGB, 0..1 pixels).
    """

    num_classes = 0  # a vision tower has no classifier head

    def __init__(self, hf: torch.nn.Module, adapter, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
        super().__init__()
        self.hf = hf
        self.adapter = adapter
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        for attn in adapter.attentions(hf):  # rope-viz reads attn.num_heads; towers name it differently
            if not hasattr(attn, "num_heads"):
                attn.num_heads = adapter.num_heads(hf)

    @property
    def blocks(self) -> list[BlockView]:
        return [BlockView(attn) for attn in self.adapter.attentions(self.hf)]

    @property
    def embed_dim(self) -> int:
        return self.adapter.width(self.hf)

    @property
    def patch_embed(self) -> PatchInfo:
        p = self.adapter.patch(self.hf)
        return PatchInfo((p, p))

    @property
    def num_prefix_tokens(self) -> int:
        return self.adapter.prefix_tokens(self)["total"]

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last block's output tokens in rope-viz order, one image at a time through the tower's own input
        format. Shapes: images (B, 3, H, W) normalised -> (B, prefix + gh * gw, C)"""
        return torch.stack([self.adapter.features(self, image[None]) for image in images])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Mean of the patch tokens' features (no classes). Shapes: (B, 3, H, W) -> (B, C)"""
        return self.forward_features(images)[:, self.num_prefix_tokens:].mean(1)
