"""Model families: one adapter per kind of model (one file each) says where its positions live.

This package is the public face that `from rope_viz import families` also gives: a module's adapter
(`family_of`), its frequencies for a grid (`model_freqs`), positions, convention, prefix tokens,
training grid, image-size rules, and `override_freqs`, the one way positions are changed. Each
function takes the model (or a LoadedModel, or a classifier wrapper) and resolves it once.
"""
from __future__ import annotations

import torch

from rope_viz.adapters.base import Adapter, Convention, check_patch_multiple, patch_size
from rope_viz.adapters.calls import ROPE_COS_SIN, ROPE_KWARG, RopeCall, rope_embed
from rope_viz.adapters.override import override_freqs
from rope_viz.adapters.registry import ADAPTERS, Resolved, adapter_of, body_of, get_adapter, module_of, resolve
from rope_viz.errors import FamilyError

__all__ = ["Adapter", "Family", "Convention", "FamilyError", "ADAPTERS", "FAMILIES", "Resolved", "resolve",
           "adapter_of", "family_of", "body_of", "module_of", "patch_size", "check_patch_multiple", "get_adapter",
           "get_family", "model_freqs", "positions", "convention", "train_grid", "check_image_size",
           "prefix_tokens", "override_freqs", "rope_call", "rope_embed", "RopeCall", "ROPE_KWARG", "ROPE_COS_SIN"]

# The names rope-viz used before adapters had their own files; outside code imports them.
Family = Adapter
FAMILIES = ADAPTERS
family_of = adapter_of
get_family = get_adapter


def _grid(resolved: Resolved, grid) -> tuple[int, int]:
    return tuple(int(v) for v in grid) if grid is not None else resolved.train_grid()


def model_freqs(module: torch.nn.Module, grid: tuple[int, int] | None = None) -> torch.Tensor | None:
    """Every layer's and head's frequency vectors in rad/patch for a patch grid (default: training grid).

    None for APE-only models. Shapes: -> (L, H, D/2, 2) float32, detached, on the CPU
    """
    r = resolve(module)
    if not r.adapter.has_rope:
        return None
    return r.adapter.read_freqs(r.body, _grid(r, grid)).float()


def positions(module: torch.nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """Patch positions (x, y) in patch units as the family places them: integer indices plus its offset.

    Shapes: -> (gh * gw, 2) float32, row-major
    """
    r = resolve(module)
    return r.adapter.positions(r.body, _grid(r, grid))


def convention(module: torch.nn.Module, grid: tuple[int, int] | None = None) -> Convention:
    """The family's position convention for this model and grid (default: the training grid)."""
    r = resolve(module)
    return r.adapter.convention(r.body, _grid(r, grid))


def train_grid(module: torch.nn.Module) -> tuple[int, int]:
    """The patch grid the model was built for: (gh, gw)."""
    r = resolve(module)
    return r.train_grid()


def prefix_tokens(module: torch.nn.Module) -> dict[str, int]:
    """Tokens before the patches, never rotated: {'cls': 0|1, 'registers': n, 'total': cls + n}."""
    r = resolve(module)
    return r.adapter.prefix_tokens(r.body)


def check_image_size(module: torch.nn.Module, height: int, width: int) -> None:
    """Raise FamilyError (one sentence) when the model's own forward refuses this image size (pixels)."""
    r = resolve(module)
    r.adapter.check_image_size(r.body, height, width)


def rope_call(module: torch.nn.Module) -> RopeCall:
    """How the model's attentions receive their rotation (rope_viz.adapters.calls)."""
    return resolve(module).adapter.call
