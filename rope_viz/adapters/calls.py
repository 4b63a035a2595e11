"""How each kind of attention receives its rotation, for capture and for inference-time overrides.

timm's EvaAttention / AttentionRope take one `rope` tensor, cat(sin, cos), and hold q, k as
(B, H, N, D); Gemma4Attention takes (rope_cos, rope_sin) positionally, shared by all heads, and holds
q, k as (B, N, H, D). An adapter names its call (Adapter.call); capture and override_freqs
read, build, replace and apply rotations through it only.
"""
from __future__ import annotations

import torch
from timm.layers import apply_rot_embed_cat
from timm.models.gemma4_vit import apply_multidimensional_rope

from rope_viz.rotary import rope2d as rope_math
from rope_viz.errors import FamilyError

__all__ = ["RopeCall", "RopeCosSin", "ROPE_KWARG", "ROPE_COS_SIN", "rope_embed", "one_rotation"]


def one_rotation(freqs_layer: torch.Tensor, who: str) -> torch.Tensor:
    """The one head's vectors of an attention that rotates every head alike; FamilyError (one sentence naming
    `who`) when the heads' frequencies differ. Shapes: freqs_layer (H, D/2, 2) -> (D/2, 2)"""
    if not torch.equal(freqs_layer, freqs_layer[:1].expand_as(freqs_layer)):
        raise FamilyError(f"{who} shares one rotation across its heads, so it cannot take different "
                          "frequencies per head.")
    return freqs_layer[0]


def rope_embed(freqs_layer: torch.Tensor, pos: torch.Tensor, half: bool) -> torch.Tensor:
    """timm's rope argument, cat(sin, cos) in the attention's pair layout, from freqs and positions.

    Shapes: freqs_layer (H, D/2, 2), pos (N, 2) -> (H, N, 2D)
    """
    angles = rope_math.angles(freqs_layer, pos)  # (H, N, D/2)
    sin, cos = angles.sin(), angles.cos()
    if half:
        sin, cos = torch.cat([sin, sin], -1), torch.cat([cos, cos], -1)  # (j, j + D/2) pairs
    else:
        sin, cos = sin.repeat_interleave(2, -1), cos.repeat_interleave(2, -1)  # (2j, 2j+1) pairs
    return torch.cat([sin, cos], dim=-1)


class RopeCall:
    """timm's EvaAttention / AttentionRope: a `rope` argument cat(sin, cos) (N, 2D) or (H, N, 2D), q and k
    (B, H, N, D) at q_norm/k_norm, prefix tokens unrotated, logits scaled by attn.scale."""

    def read(self, args, kwargs):
        """The rotation this forward receives, or None (APE-only models)."""
        return kwargs.get("rope", args[1] if len(args) > 1 else None)

    def replace(self, args, kwargs, rope):
        return args, {**kwargs, "rope": rope}

    def tokens(self, args, kwargs) -> int:
        """Tokens in this forward (prefix included): x is (B, N, C)."""
        return int(args[0].shape[1])

    def build(self, freqs_layer: torch.Tensor, pos: torch.Tensor, pairs: str):
        """The rotation argument for one layer. Shapes: freqs_layer (H, D/2, 2), pos (N, 2)"""
        return rope_embed(freqs_layer, pos, pairs == "half")

    def rotate(self, attn, x: torch.Tensor, rope) -> torch.Tensor:
        """q or k as the attention multiplies them. Shapes: x (B, H, N, D) q_norm output -> (B, H, N, D)"""
        if rope is None:
            return x
        half, n = getattr(attn, "rotate_half", False), attn.num_prefix_tokens
        return torch.cat([x[:, :, :n], apply_rot_embed_cat(x[:, :, n:], rope, half=half)], dim=2)

    def scale(self, attn, head_dim: int) -> float:
        return float(getattr(attn, "scale", head_dim ** -0.5))

    def unrotated(self, attn, x: torch.Tensor) -> torch.Tensor:
        """q or k before rotation, laid out as rotate() returns them. Shapes: x q_norm output -> (B, H, N, D)"""
        return x


class RopeCosSin(RopeCall):
    """Gemma4Attention: (rope_cos, rope_sin) (B, N, D) passed positionally after x, shared by all heads,
    q and k (B, N, H, D) at q_norm/k_norm, no prefix tokens, logits unscaled (q, k are RMS-normed)."""

    def read(self, args, kwargs):
        cos = kwargs.get("rope_cos", args[1] if len(args) > 1 else None)
        sin = kwargs.get("rope_sin", args[2] if len(args) > 2 else None)
        return cos, sin

    def replace(self, args, kwargs, rope):
        rest = {k: v for k, v in kwargs.items() if k not in ("rope_cos", "rope_sin")}
        return (args[0], *rope, *args[3:]), rest

    def build(self, freqs_layer: torch.Tensor, pos: torch.Tensor, pairs: str):
        head = one_rotation(freqs_layer, "Gemma4's attention")
        angles = rope_math.angles(head, pos).unflatten(-1, (2, -1))  # (N, 2 blocks, D/4)
        angles = torch.cat([angles, angles], dim=-1).flatten(-2)[None]  # (1, N, D): pair (i, i + D/4) per block
        return angles.cos(), angles.sin()

    def rotate(self, attn, x: torch.Tensor, rope) -> torch.Tensor:
        cos, sin = rope
        x = apply_multidimensional_rope(x, cos, sin, ndim=2, unsqueeze_dim=2).transpose(1, 2)  # (B, H|KV, N, D)
        return x.repeat_interleave(attn.num_heads // x.shape[1], dim=1)  # grouped k/v heads, as the model does

    def scale(self, attn, head_dim: int) -> float:
        return 1.0  # Gemma4Attention calls SDPA with scale=1.0

    def unrotated(self, attn, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, H|KV, N, D)
        return x.repeat_interleave(attn.num_heads // x.shape[1], dim=1)


ROPE_KWARG, ROPE_COS_SIN = RopeCall(), RopeCosSin()
