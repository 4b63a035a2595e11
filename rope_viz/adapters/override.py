"""Running a model with other frequencies or positions: the one way rope-viz changes a model's positions.

A forward pre-hook (with_kwargs, prepended so a capture entered earlier or later sees the result) on
each block's attention replaces the rotation argument the attention receives (`rope`; Gemma 4's
rope_cos/rope_sin) for the calling thread only; the shared model is never changed and the hooks come
off in `finally`.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

from rope_viz.adapters.registry import resolve
from rope_viz.errors import FamilyError


def _to(rope, device):
    return tuple(t.to(device) for t in rope) if isinstance(rope, tuple) else rope.to(device)


@contextmanager
def override_freqs(module: torch.nn.Module, freqs: torch.Tensor, grid: tuple[int, int], shift=(0.0, 0.0)):
    """Within the context, forwards of `module` at `grid` by the calling thread only rotate q/k with
    `freqs` at the family's own positions (integer indices plus its offset, so CLS-patch logits match),
    moved by `shift` (x, y) patches, instead of the model's own rope.

    A forward by the calling thread at another grid raises. Gemma 4 shares one rotation across heads:
    per-head freqs raise.
    Shapes: freqs (L, H, D/2, 2) float32 rad/patch for the patch grid (gh, gw)
    """
    resolved = resolve(module)
    adapter, body = resolved.adapter, resolved.body
    if not adapter.has_rope:
        raise FamilyError(f"{adapter.label} models have no rotary frequencies to override.")
    depth, heads = len(body.blocks), body.blocks[0].attn.num_heads
    if tuple(freqs.shape[:2]) != (depth, heads) or freqs.shape[-1] != 2:
        raise FamilyError(f"freqs of shape {tuple(freqs.shape)} do not fit this model: expected ({depth}, {heads}, D/2, 2).")
    gh, gw = grid
    device = next(body.parameters()).device
    pos = adapter.positions(body, grid) + torch.tensor(shift, dtype=torch.float32)
    call, prefix = adapter.call, adapter.prefix_tokens(body)["total"]
    embeds = [_to(adapter.build_rotation(body, freqs[i].float(), pos, grid), device)  # fp32, as timm builds it
              for i in range(depth)]
    owner = threading.get_ident()

    def replace(index):
        def hook(attn, args, kwargs):
            if threading.get_ident() != owner:
                return None  # another session's forward through the shared model
            tokens = call.tokens(args, kwargs) - prefix
            if tokens != gh * gw:
                raise FamilyError(f"override_freqs was set for a {gh} x {gw} grid but the forward has {tokens} patches.")
            return call.replace(args, kwargs, embeds[index])
        return hook

    handles = []
    try:
        for i, block in enumerate(body.blocks):
            handles.append(block.attn.register_forward_pre_hook(replace(i), with_kwargs=True, prepend=True))
        yield module
    finally:
        for handle in handles:
            handle.remove()
