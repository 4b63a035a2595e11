"""Pure 2D RoPE math (no nn.Module state): one representation of a model's positional scheme.

Every RoPE head has D/2 frequency vectors w_j = (w_x, w_y) in rad/patch. A patch at grid
position p = (x, y) rotates feature pair (2j, 2j+1) of q and k by the angle w_j . p, so that
q_a . k_b depends on p_a - p_b only. A whole model is one tensor `freqs (L, H, D/2, 2)`.

Nothing here reads a model: `rope.model_freqs` (through rope_viz.adapters) does, on top of this.
"""
from __future__ import annotations

import math

import torch

from rope_viz.errors import InputError

__all__ = [
    "axial_freqs",
    "mixed_freqs",
    "grid_positions",
    "angles",
    "apply_rope",
    "similarity_kernel",
    "compute_spectrum",
    "check_rope_config",
]


def check_rope_config(head_dim: int, theta: float) -> None:
    """Raise InputError (a RopeVizError) with one clear sentence if (head_dim, theta) cannot define 2D RoPE."""
    if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 4 != 0:
        raise InputError(
            f"head_dim must be a positive multiple of 4 (2D RoPE splits it into x and y pairs), got {head_dim}."
        )
    if not (theta > 0 and math.isfinite(theta)):
        raise InputError(f"theta must be a positive finite number, got {theta}.")


def _magnitudes(head_dim: int, theta: float) -> torch.Tensor:
    """f_i = 1 / theta^(4i/D) for i < D/4, the shared magnitude ladder of axial and mixed RoPE.

    Shapes: -> (D/4,)
    """
    check_rope_config(head_dim, theta)
    i = torch.arange(head_dim // 4, dtype=torch.float32)
    return 1.0 / (theta ** (4.0 * i / head_dim))


def axial_freqs(head_dim: int, theta: float = 100.0) -> torch.Tensor:
    """RoPE-Axial frequencies: the first D/4 pairs turn with x, the next D/4 with y.

    Shapes: -> (D/2, 2) rows (w_x, w_y) in rad/patch.
    """
    mag = _magnitudes(head_dim, theta)
    zeros = torch.zeros_like(mag)
    x_pairs = torch.stack([mag, zeros], dim=-1)  # (D/4, 2) along x
    y_pairs = torch.stack([zeros, mag], dim=-1)  # (D/4, 2) along y
    return torch.cat([x_pairs, y_pairs], dim=0)


def mixed_freqs(
    head_dim: int, num_heads: int, theta: float = 10.0, seed: int = 0, depth: int = 1
) -> torch.Tensor:
    """RoPE-Mixed initialisation: per layer and head one random angle a, magnitudes f_i along a
    (first D/4 pairs) and along a + pi/2 (next D/4 pairs), as in the paper and timm.

    Shapes: -> (depth, num_heads, D/2, 2)
    """
    if num_heads < 1 or depth < 1:
        raise InputError(f"num_heads and depth must be at least 1, got {num_heads} and {depth}.")
    mag = _magnitudes(head_dim, theta)  # (D/4,)
    gen = torch.Generator().manual_seed(int(seed))
    a = torch.rand(depth, num_heads, 1, generator=gen) * 2 * math.pi  # (L, H, 1)
    directions = torch.cat([a.expand(-1, -1, mag.numel()), (a + math.pi / 2).expand(-1, -1, mag.numel())], -1)
    mags = torch.cat([mag, mag])  # (D/2,)
    return torch.stack([mags * torch.cos(directions), mags * torch.sin(directions)], dim=-1)


def grid_positions(h: int, w: int, scale: float = 1.0) -> torch.Tensor:
    """Patch positions (x, y) of an h x w grid, row-major (x = column), times `scale`.

    A scale below 1 is position interpolation: a larger grid squeezed onto the training range.
    Shapes: -> (h*w, 2) float32
    """
    if h < 1 or w < 1:
        raise InputError(f"grid size must be at least 1 x 1, got {h} x {w}.")
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1) * scale


def angles(freqs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotation angle of every pair at every position: w_j . p, in fp32.

    Elementwise products (not a matmul) keep the result exact and identical to timm's.
    Shapes: freqs (..., D/2, 2), positions (N, 2) -> (..., N, D/2)
    """
    freqs = freqs.float()
    positions = positions.float().to(freqs.device)
    fx = freqs[..., 0].unsqueeze(-2)  # (..., 1, D/2)
    fy = freqs[..., 1].unsqueeze(-2)
    px = positions[:, 0].unsqueeze(-1)  # (N, 1)
    py = positions[:, 1].unsqueeze(-1)
    return px * fx + py * fy


PAIR_LAYOUTS = ("interleaved", "half", "axis-half")


def apply_rope(x: torch.Tensor, angles: torch.Tensor, half: bool = False, pairs: str | None = None) -> torch.Tensor:
    """Rotate feature pair j of x by angles[..., j]; result in x's dtype.

    Pair j is features (2j, 2j+1) (pairs='interleaved', naver/EVA), (j, j + D/2) (half=True or
    pairs='half': timm's rotate_half layout, DINOv3), or for 'axis-half' (Gemma4) the half layout
    within each of two blocks of D/2 features: pair j < D/4 is (j, j + D/4), pair D/4 + i is
    (D/2 + i, 3D/4 + i). Either way the same angle rotates the same pair.
    Shapes: x (..., N, D), angles broadcastable to (..., N, D/2) -> (..., N, D)
    """
    D = x.shape[-1]
    pairs = pairs or ("half" if half else "interleaved")
    if pairs not in PAIR_LAYOUTS:
        raise ValueError(f"Unknown pair layout {pairs!r}; valid: {', '.join(PAIR_LAYOUTS)}.")
    if D % 2 or angles.shape[-1] != D // 2:
        raise ValueError(f"x has {D} features but angles has {angles.shape[-1]} pairs; need D/2 pairs.")
    if pairs == "axis-half":  # two blocks (x, then y), each rotated in the half layout
        blocks = apply_rope(x.unflatten(-1, (2, D // 2)), angles.unflatten(-1, (2, D // 4)), half=True)
        return blocks.flatten(-2)
    half = pairs == "half"
    cos, sin = torch.cos(angles), torch.sin(angles)
    if half:
        even, odd = x[..., : D // 2], x[..., D // 2:]  # (..., N, D/2) each
    else:
        pairs = x.unflatten(-1, (D // 2, 2))  # (..., N, D/2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]
    # Rotation in fp32 (angles' dtype) and one cast at the end, like timm.
    rotated = (even * cos - odd * sin, even * sin + odd * cos)
    out = torch.cat(rotated, dim=-1) if half else torch.stack(rotated, dim=-1).flatten(-2)
    return out.to(x.dtype)


def split_pairs(x: torch.Tensor, pairs: str = "interleaved") -> tuple[torch.Tensor, torch.Tensor]:
    """The two components of every feature pair, in pair order j, for a channel layout (as apply_rope
    pairs them). Shapes: x (..., D) -> (even (..., D/2), odd (..., D/2))"""
    D = x.shape[-1]
    if pairs == "interleaved":
        return x[..., 0::2], x[..., 1::2]
    if pairs == "half":
        return x[..., : D // 2], x[..., D // 2:]
    if pairs == "axis-half":  # pair i < D/4: (i, i + D/4); pair D/4 + i: (D/2 + i, 3D/4 + i)
        q = D // 4
        return torch.cat([x[..., :q], x[..., 2 * q:3 * q]], -1), torch.cat([x[..., q:2 * q], x[..., 3 * q:]], -1)
    raise ValueError(f"Unknown pair layout {pairs!r}; valid: {', '.join(PAIR_LAYOUTS)}.")


def similarity_kernel(freqs: torch.Tensor, h: int, w: int, query_xy: tuple[int, int]) -> torch.Tensor:
    """mean_j cos(w_j . (p - p_query)) over an h x w grid: the attention logit a query with all
    pairs aligned (q = k, unit pairs) gives each patch, i.e. what position alone contributes.

    Shapes: freqs (..., D/2, 2) -> (..., h, w)
    """
    qx, qy = query_xy
    if not (0 <= qx < w and 0 <= qy < h):
        raise InputError(f"query ({qx}, {qy}) is outside the {w} x {h} grid (x < {w}, y < {h}).")
    offsets = grid_positions(h, w) - torch.tensor([float(qx), float(qy)])  # (N, 2)
    kernel = torch.cos(angles(freqs, offsets)).mean(dim=-1)  # (..., N)
    return kernel.unflatten(-1, (h, w))


def compute_spectrum(freqs: torch.Tensor, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """2D power spectrum of a head's similarity kernel (the paper's Figure 1 view).

    The logit q_a . k_b is a sum of cos(w_j . (p_a - p_b)) terms, so its spectrum is a set of
    peaks at +-w_j: the frequencies attention can express. Axial puts them on the two axes
    only; mixed spreads them over directions. A Hann window keeps peaks from smearing.
    Shapes: freqs (D/2, 2) -> (omega (size,) rad/patch, power (size, size) rows = w_y, cols = w_x)
    """
    c = size // 2
    kernel = similarity_kernel(freqs, size, size, (c, c))  # (size, size)
    hann = torch.hann_window(size, periodic=True, dtype=torch.float64)
    windowed = kernel.double() * hann[:, None] * hann[None, :]
    power = torch.fft.fftshift(torch.fft.fft2(windowed)).abs() ** 2
    omega = torch.fft.fftshift(torch.fft.fftfreq(size, dtype=torch.float64)) * 2 * math.pi
    return omega.float(), (power / power.max().clamp_min(1e-30)).float()
