"""Checks every Hugging Face tower's test runs against transformers' own code (nothing here is a test).

- rotation_errors: the rotation the tower applies (its own apply_rotary_pos_emb* on the position_embeddings
  its attentions receive) against rope-viz's (rope.model_freqs and rope.model_positions, the adapter's pair
  layout), in rope-viz token order: this also checks the adapter's token order.
- eager_maps: the weights transformers' own eager attention function computes, recorded by wrapping it,
  per call (image or window), assembled into (H, N, N) per layer in rope-viz order (zero outside a window).
"""
from __future__ import annotations

import copy
import sys

import torch

from rope_viz import rope
from rope_viz.adapters.towers import Tower
from rope_viz.measure.tower_capture import capture_tower
from rope_viz.rotary import rope2d


def own_rotations(tower: Tower, image: torch.Tensor) -> list:
    """The position_embeddings each layer's attention receives in the tower's own forward (first call)."""
    got, handles = {}, []
    adapter = tower.adapter

    def keep(i):
        def hook(module, args, kwargs):  # returns None: a pre-hook's return value would replace the inputs
            got.setdefault(i, adapter.call.read(args, kwargs))
        return hook

    for i, attn in enumerate(adapter.attentions(tower.hf)):
        handles.append(attn.register_forward_pre_hook(keep(i), with_kwargs=True))
    try:
        with torch.no_grad():
            adapter.run(tower.hf, image)
    finally:
        for h in handles:
            h.remove()
    return [got[i] for i in range(len(got))]


def gram_error(theirs: torch.Tensor, mine: torch.Tensor, segment: torch.Tensor) -> float:
    """max |theirs_a . theirs_b - mine_a . mine_b| over token pairs (a, b) of one segment (window), per head: zero
    exactly when the two rotations differ by one rotation per window. Shapes: theirs, mine (H, N, D), segment (N,)"""
    err = 0.0
    for s in segment.unique():
        a, b = theirs[:, segment == s].double(), mine[:, segment == s].double()
        err = max(err, (a @ a.transpose(-2, -1) - b @ b.transpose(-2, -1)).abs().max().item())
    return err


def rotation_errors(tower: Tower, image: torch.Tensor, apply_own, check_prefix: bool = True,
                    seed: int = 0, window_local: bool = False) -> list[float]:
    """Per layer, max |tower's rotation - rope-viz's rotation| over every token of random q.

    apply_own(x, position_embeddings, layer) rotates x (H, T, D), the tower's internal order of that layer,
    exactly as the tower does. Prefix tokens must stay unrotated (unless check_prefix is False). window_local:
    windowed layers rotate by positions inside their window, so there q . k within each window is compared.
    Shapes: image (1, 3, H, W) normalised"""
    adapter, hf = tower.adapter, tower.hf
    grid = (image.shape[-2] // adapter.patch(hf), image.shape[-1] // adapter.patch(hf))
    freqs = rope.model_freqs(tower, grid)  # (L, H, D/2, 2)
    pos = rope.model_positions(tower, grid)  # (P, 2)
    npt, pairs = adapter.prefix_tokens(tower)["total"], adapter.layout(tower)[1]
    errors = []
    segments = capture_tower(tower, image).segments if window_local else None  # (L, N) or None
    windowed = adapter.windowed_layers(tower)
    gen = torch.Generator().manual_seed(seed)
    for layer, pe in enumerate(own_rotations(tower, image)):
        order = adapter.token_order(hf, grid, layer)
        H, D = freqs.shape[1], 2 * freqs.shape[2]
        x = torch.randn(H, order.numel(), D, generator=gen)  # internal order
        theirs = apply_own(x, pe, layer).float()
        theirs_rv = torch.empty_like(theirs).index_copy_(1, order, theirs)
        x_rv = torch.empty_like(x).index_copy_(1, order, x)
        mine = rope2d.apply_rope(x_rv[:, npt:], rope2d.angles(freqs[layer], pos), pairs=pairs)
        if segments is not None and windowed[layer]:
            err = gram_error(theirs_rv[:, npt:], mine, segments[layer, npt:])
        else:
            err = (theirs_rv[:, npt:] - mine).abs().max().item()
        if check_prefix and npt:
            err = max(err, (theirs_rv[:, :npt] - x_rv[:, :npt]).abs().max().item())
        errors.append(err)
    return errors


def eager_maps(tower: Tower, image: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's attention weights from transformers' own eager attention function (the tower's modeling
    file's eager_attention_forward, wrapped on a private copy), in rope-viz order.

    Shapes: image (1, 3, H, W) -> L x (H, N, N), zero where a window hides a key"""
    ref = copy.deepcopy(tower)
    adapter, hf = ref.adapter, ref.hf
    attentions = adapter.attentions(hf)
    grid = (image.shape[-2] // adapter.patch(hf), image.shape[-1] // adapter.patch(hf))
    index = {id(a): i for i, a in enumerate(attentions)}
    weights: dict[int, list[torch.Tensor]] = {}
    for attn in attentions:
        attn.config._attn_implementation_internal = "eager"
    modeling = sys.modules[type(attentions[0]).__module__]
    # Llama 4's vision attention defaults to its file's vision_eager_attention_forward, not eager_attention_forward
    names = [name for name in ("eager_attention_forward", "vision_eager_attention_forward") if hasattr(modeling, name)]
    owns = {name: getattr(modeling, name) for name in names}

    def wrapping(own):
        def wrapped(module, *args, **kwargs):
            out, w = own(module, *args, **kwargs)
            if id(module) in index:
                weights.setdefault(index[id(module)], []).append(w.detach().float())
            return out, w
        return wrapped

    for name, own in owns.items():
        setattr(modeling, name, wrapping(own))
    try:
        with torch.no_grad():
            adapter.run(hf, image)
    finally:
        for name, own in owns.items():
            setattr(modeling, name, own)
    maps = []
    for layer in range(len(attentions)):
        blocks = [w[b] for w in weights[layer] for b in range(w.shape[0])]  # (H, n, n) per window
        T = sum(b.shape[-1] for b in blocks)
        full = torch.zeros(blocks[0].shape[0], T, T)
        start = 0
        for b in blocks:
            n = b.shape[-1]
            full[:, start:start + n, start:start + n] = b
            start += n
        order = adapter.token_order(hf, grid, layer)
        out = torch.zeros_like(full)
        out[:, order[:, None], order[None, :]] = full
        maps.append(out)
    return maps
