"""Capture for Hugging Face vision towers: q and k as the attention function receives them, mapped to
rope-viz order, with the windows each layer's queries see.

One image at a time goes through the tower's own forward in its own input format (adapter.inputs); the
recorder (rope_viz.adapters.towers.record) keeps every call of the attention function: one per image for
full attention, one per window for windowed layers. Each call is one segment: a query sees exactly the
keys of its segment. Tokens are then put in rope-viz order (prefix first, patches row-major) by the
adapter's token_order, so maps are in raster order whatever order the tower keeps its tokens in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rope_viz.adapters.towers.base import to_rope_viz_order
from rope_viz.adapters.towers.record import Call, recording
from rope_viz.errors import RopeVizError


class TowerCaptureError(RopeVizError):
    """A tower's forward could not be captured; one sentence."""


@dataclass
class TowerCapture:
    """Shapes: q, k (B, L, H, N, D) rope-viz order; segments (L, N) long or None (every layer full);
    features (B, N, C) the last block's tokens; scale the logit scale the tower passes."""

    q: torch.Tensor
    k: torch.Tensor
    segments: torch.Tensor | None
    features: torch.Tensor
    scale: float


def _masked(call: Call) -> bool:
    """True when the call's mask hides any key (a float mask with -inf or a bool mask with False)."""
    if call.mask is None:
        return False
    mask = call.mask
    return bool((~mask).any()) if mask.dtype == torch.bool else bool((mask < -1e4).any())


def _layer(calls: list[Call], order: torch.Tensor, heads: int):
    """One layer's calls -> q, k (H, N, D) in rope-viz order and each token's segment (N,).

    Each call, and each batch row of a call (windows that a tower stacks as a batch, as SAM 3 does), is
    one segment; the internal order is the calls' rows one after another."""
    if any(_masked(c) for c in calls):
        raise TowerCaptureError("The tower masks keys inside one attention call, which rope-viz cannot map yet.")
    rows = [(c.q[b], c.k[b]) for c in calls for b in range(c.q.shape[0])]  # (H, n, D) each
    q = torch.cat([q for q, _ in rows], dim=1)  # (H, T, D) internal order
    k = torch.cat([k.repeat_interleave(heads // k.shape[0], dim=0) for _, k in rows], dim=1)  # grouped kv heads
    segment = torch.cat([torch.full((q.shape[1],), i, dtype=torch.long) for i, (q, _) in enumerate(rows)])
    if (order < 0).any():
        raise TowerCaptureError("The tower pads its windows at this image size, so some keys are not patches; "
                                "choose sides that fill its windows exactly.")
    if q.shape[1] != order.numel():
        raise TowerCaptureError(f"The tower attended over {q.shape[1]} tokens but its adapter orders {order.numel()}.")
    return to_rope_viz_order(q, order, 1), to_rope_viz_order(k, order, 1), to_rope_viz_order(segment, order)


def capture_tower(body, images: torch.Tensor) -> TowerCapture:
    """Run the tower on each image and keep every layer's post-RoPE q and k.

    Shapes: images (B, 3, H, W) normalised with the tower's own mean/std -> TowerCapture"""
    adapter, hf = body.adapter, body.hf
    attentions = adapter.attentions(hf)
    grid = (images.shape[-2] // adapter.patch(hf), images.shape[-1] // adapter.patch(hf))
    orders = [adapter.token_order(hf, grid, layer) for layer in range(len(attentions))]
    out_order = adapter.token_order(hf, grid)
    heads = adapter.num_heads(hf)
    q_all = k_all = segments = None  # (B, L, H, N, D) filled in place: no stacked copies of q and k
    feats, scales = [], set()
    for b, image in enumerate(images):
        with recording(attentions) as rec, torch.inference_mode():
            hidden = adapter.last_tokens(hf, image[None]).float()  # (T, C) internal order
        if len(rec.calls) != len(attentions):
            raise TowerCaptureError(f"Recorded {len(rec.calls)} of {len(attentions)} layers; the tower's attention "
                                    "did not go through transformers' attention functions.")
        scales.update(c.scaling for calls in rec.calls.values() for c in calls)
        layer_segments = []
        for i in range(len(attentions)):
            q, k, segment = _layer(rec.calls.pop(i), orders[i], heads)  # pop: the recorded q, k go once placed
            if q_all is None:
                q_all = q.new_empty((len(images), len(attentions), *q.shape))
                k_all = torch.empty_like(q_all)
            q_all[b, i], k_all[b, i] = q, k
            layer_segments.append(segment)
            del q, k
        segments = torch.stack(layer_segments)  # (L, N): same for every image of one size
        feats.append(to_rope_viz_order(hidden, out_order))
    if len(scales) != 1:
        raise TowerCaptureError(f"The tower scales its logits differently across layers ({sorted(scales)}).")
    full = bool((segments == 0).all())
    return TowerCapture(q=q_all, k=k_all, segments=None if full else segments,
                        features=torch.stack(feats), scale=scales.pop())
