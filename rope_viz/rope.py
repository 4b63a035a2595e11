"""2D RoPE: the pure math (rope_math) and a model's frequencies read through its family.

Every RoPE head has D/2 frequency vectors w_j = (w_x, w_y) in rad/patch. A patch at grid
position p = (x, y) rotates feature pair j of q and k by the angle w_j . p, so that
q_a . k_b depends on p_a - p_b only. A whole model is one tensor `freqs (L, H, D/2, 2)`.
"""
from __future__ import annotations

import torch

from rope_viz import adapters
from rope_viz.rotary.rope2d import (angles, apply_rope, axial_freqs, check_rope_config, compute_spectrum,
                                grid_positions, mixed_freqs, similarity_kernel)

__all__ = ["axial_freqs", "mixed_freqs", "grid_positions", "angles", "apply_rope", "similarity_kernel",
           "compute_spectrum", "check_rope_config", "model_freqs", "model_positions"]


def model_freqs(module: torch.nn.Module, grid: tuple[int, int] | None = None) -> torch.Tensor | None:
    """The model's whole positional scheme in rad/patch for a patch grid (default: its training grid),
    or None for APE-only models. Read by the model's family (rope_viz.adapters), never by its name;
    grid-dependent for families with normalised positions (DINOv3, EVA-02, SBB, PE).

    Raises adapters.FamilyError for position schemes this tool does not read.
    Shapes: grid (gh, gw) -> (L, H, D/2, 2) float32, detached
    """
    return adapters.model_freqs(module, grid)


def model_positions(module: torch.nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """Patch positions (x, y) as the model's family places them (integer indices plus its offset),
    so that angles(model_freqs(module, grid), model_positions(module, grid)) are the model's angles.

    Shapes: -> (gh * gw, 2) float32, row-major
    """
    return adapters.positions(module, grid)
