"""Shared test helpers: tiny models, timm's own (non-fused) attention as the reference, a hook counter,
and the page runner. Tests import them from here; nothing here is a test."""
from __future__ import annotations

import copy

import torch
from streamlit.testing.v1 import AppTest

from rope_viz import families, models, positions

PAGE_TIMEOUT = 300  # s: a first page run builds models and imports torch


def tiny_model(pos: str, seed: int = 0, img_size: int = 32, depth: int = 2) -> torch.nn.Module:
    """A bundled-style Eva of one of the paper's five position kinds (8 px patches, 2 heads of 16),
    random weights, with learned-looking mixed frequencies (different per layer and head)."""
    torch.manual_seed(seed)
    arch = models.eva_architecture(pos, img_size=img_size, patch_size=8, embed_dim=32, depth=depth, num_heads=2,
                                   num_classes=4, init_values=None)
    module = models.build_eva(arch).eval()
    if getattr(module, "rope", None) is not None and hasattr(module.rope, "freqs"):
        with torch.no_grad():
            module.rope.freqs.add_(0.3 * torch.randn_like(module.rope.freqs))
    return module


def reference_attention(module: torch.nn.Module, x: torch.Tensor, method: str | None = None, grid=None,
                        freqs: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Every layer's attention weights as timm computes them on its non-fused path (read at attn_drop), on a
    private copy, optionally under a position method or an override of the frequencies.

    Shapes: x (B, 3, H, W) -> L x (B, H, N, N)
    """
    ref = copy.deepcopy(module)
    maps = {}
    blocks = families.body_of(ref).blocks
    for i, block in enumerate(blocks):
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda m, a, out, i=i: maps.__setitem__(i, out))
    with torch.no_grad():
        if freqs is not None:
            with families.override_freqs(ref, freqs, grid):
                ref(x)
        elif method is not None:
            with positions.apply_method(ref, method, grid):
                ref(x)
        else:
            ref(x)
    return [maps[i] for i in range(len(blocks))]


def count_hooks(module: torch.nn.Module) -> int:
    """Forward hooks and pre-hooks anywhere in the module: 0 after every capture, method and attribution."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def run_page(page: str, timeout: int = PAGE_TIMEOUT) -> AppTest:
    """The app opened at `page` under AppTest, with no exception on the way."""
    at = AppTest.from_file("../app.py", default_timeout=timeout)
    at.run()
    if page != "pages/home.py":
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at
