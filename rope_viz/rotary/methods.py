"""Inference-time position methods as pure functions: run a RoPE ViT on a grid other than its training grid.

Every method is a pure function of
  freqs       (L, H, D/2, 2) frequency vectors w_j in rad/patch: the model's vectors *at its training
              grid* for most methods, its own vectors *on the grid* for `native` (see each record's `base`
              in rope_viz.measure.positions),
  grid        (gh, gw) the patch grid the model is run on,
  train_grid  (th, tw) the patch grid it was trained on,
and returns a `Positions`: new freqs (rad/patch on `grid`) plus a multiplier for the attention logits.

Why scaling freqs is enough: a patch at p = (x, y) rotates pair j by w_j . p, so multiplying every
position's x by a factor is the same as multiplying w_x by it (and y likewise). Offsets of the
position grid cancel in q_a . k_b between patches. Per-axis scale of the grid: s_x = gw / tw, s_y = gh / th.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rope_viz.errors import RopeVizError

__all__ = ["Positions", "PositionMethodError", "grid_scale", "native", "extrapolate", "interpolate", "ntk", "yarn",
           "yarn_temperature", "log_n", "normalised", "NORMALISATIONS", "drop_low", "drop_high"]


class PositionMethodError(RopeVizError, ValueError):
    """An unknown method or a bad option; the message is one sentence meant for the UI."""


@dataclass(frozen=True)
class Positions:
    """What a method changes: the frequency vectors on the grid, and a multiplier for q . k logits.

    Shapes: freqs (L, H, D/2, 2) rad/patch; logit_scale a float (1.0 = unchanged)
    """

    freqs: torch.Tensor
    logit_scale: float = 1.0


def _check_grids(grid, train_grid) -> tuple[int, int, int, int]:
    gh, gw = (int(v) for v in grid)
    th, tw = (int(v) for v in train_grid)
    if min(gh, gw, th, tw) < 1:
        raise PositionMethodError(f"Grids must be at least 1 x 1 patches, got {gh} x {gw} and training {th} x {tw}.")
    return gh, gw, th, tw


def grid_scale(grid, train_grid) -> tuple[float, float]:
    """(s_x, s_y) = (gw / tw, gh / th): how much larger the grid is than the training grid, per axis."""
    gh, gw, th, tw = _check_grids(grid, train_grid)
    return gw / tw, gh / th


def _scale_axes(freqs: torch.Tensor, factor_x, factor_y) -> torch.Tensor:
    """w_x * factor_x, w_y * factor_y; factors are floats or tensors broadcastable to (..., D/2)."""
    return torch.stack([freqs[..., 0] * factor_x, freqs[..., 1] * factor_y], dim=-1)


# ---------------------------------------------------------------- methods

def native(freqs: torch.Tensor, grid, train_grid) -> Positions:
    """As the model computes it: `freqs` are already the model's own vectors on `grid` (its adapter's
    `read_freqs(body, grid)`: DINOv3's normalised coordinates, EVA-02/SBB/PE's reference grid, naver's and
    Gemma 4's integer positions), so nothing changes. The default everywhere.
    Shapes: freqs (L, H, D/2, 2) -> Positions.freqs (L, H, D/2, 2)
    """
    _check_grids(grid, train_grid)
    return Positions(freqs.clone())


def extrapolate(freqs: torch.Tensor, grid, train_grid) -> Positions:
    """Integer positions past the training grid: the training grid's rad/patch on every grid, positions
    0 .. g-1 (Heo et al., ECCV 2024). For naver and Gemma 4 this is what the model does by itself; for
    grid-normalised families (DINOv3, EVA-02, SBB, PE) it is not.

    w_j' = w_j, logit scale 1.
    Shapes: freqs (L, H, D/2, 2) -> Positions.freqs (L, H, D/2, 2)
    """
    _check_grids(grid, train_grid)
    return Positions(freqs.clone())


def interpolate(freqs: torch.Tensor, grid, train_grid, align_corners: bool = False) -> Positions:
    """Position interpolation: the grid's positions squeezed into the training grid's range.

    Default convention (timm's EVA `ref_feat_shape`, `t = x / g * t_train` in `_build_grid`):
      position x -> x * tw / gw, so w_x' = w_x * tw / gw and w_y' = w_y * th / gh.
    align_corners=True maps the first and last patch centres onto the training grid's:
      w_x' = w_x * (tw - 1) / (gw - 1) (a 1-patch axis keeps w_x).
    Both also stretch grids smaller than the training grid, as timm does. Logit scale 1.
    Source: Chen et al. 2023, "Extending Context Window of LLMs via Positional Interpolation";
    for ViTs, EVA-02 (Fang et al. 2023) via timm's `ref_feat_shape`.
    Shapes: freqs (L, H, D/2, 2) -> Positions.freqs (L, H, D/2, 2)
    """
    gh, gw, th, tw = _check_grids(grid, train_grid)
    if align_corners:
        fx = (tw - 1) / (gw - 1) if gw > 1 else 1.0
        fy = (th - 1) / (gh - 1) if gh > 1 else 1.0
    else:
        fx, fy = tw / gw, th / gh
    return Positions(_scale_axes(freqs, fx, fy))


def _ntk_exponent(freqs: torch.Tensor) -> torch.Tensor:
    """Each pair's place on its head's frequency ladder: 0 for the fastest pair, 1 for the slowest.

    e_j = ln(|w|_max / |w_j|) / ln(|w|_max / |w|_min) over the pairs of one layer and head. On a
    geometric ladder |w_i| = theta^(-2i/D') this is i / (D'/2 - 1), the exponent bloc97's base change
    gives each frequency. Pairs with zero frequency, or heads with one magnitude, get 0 (unchanged).
    Shapes: (L, H, D/2, 2) -> (L, H, D/2)
    """
    mag = freqs.double().norm(dim=-1)  # (L, H, D/2)
    positive = mag > 0
    log_mag = torch.where(positive, mag.clamp_min(1e-300).log(), torch.zeros_like(mag))
    hi = torch.where(positive, log_mag, torch.full_like(mag, -math.inf)).amax(-1, keepdim=True)
    lo = torch.where(positive, log_mag, torch.full_like(mag, math.inf)).amin(-1, keepdim=True)
    span = hi - lo
    exponent = torch.where((span > 0) & positive, (hi - log_mag) / span.clamp_min(1e-300), torch.zeros_like(mag))
    return exponent.to(freqs.dtype)


def ntk(freqs: torch.Tensor, grid, train_grid) -> Positions:
    """NTK-aware scaling: raise the RoPE base so the fastest pair is unchanged and the slowest is interpolated.

    1D (bloc97, "NTK-Aware Scaled RoPE", 2023): theta' = theta * s^(D'/(D'-2)) for rotary dim D', so
    frequency i of D'/2, w_i = theta^(-2i/D'), becomes w_i * s^(-2i/(D'-2)): factor 1 at i = 0, 1/s at
    i = D'/2 - 1. In 2D axial RoPE each axis has D/4 pairs with w_i = theta^(-4i/D), a 1D RoPE of
    D' = D/2 dimensions, so per axis theta' = theta * s_a^(D/2 / (D/2 - 2)), s_a = max(1, g_a / t_a).
    For any frequency vectors (learned RoPE-Mixed included) the same factor is written by the pair's
    place e_j on the head's magnitude ladder (see _ntk_exponent): w_x' = w_x * s_x^(-e_j),
    w_y' = w_y * s_y^(-e_j); on an axial ladder this is exactly the base change above.
    Grids no larger than the training grid are left as trained (s_a = 1). Logit scale 1.
    Shapes: freqs (L, H, D/2, 2) -> Positions.freqs (L, H, D/2, 2)
    """
    sx, sy = (max(1.0, s) for s in grid_scale(grid, train_grid))
    e = _ntk_exponent(freqs)  # (L, H, D/2)
    return Positions(_scale_axes(freqs, sx ** -e, sy ** -e))


def yarn_temperature(s: float) -> float:
    """YaRN's sqrt(1/t) = 0.1 ln s + 1 (s >= 1): q and k are each multiplied by it, so logits by its square."""
    return 0.1 * math.log(max(1.0, s)) + 1.0


def yarn(freqs: torch.Tensor, grid, train_grid, alpha: float = 1.0, beta: float = 32.0) -> Positions:
    """YaRN per axis: interpolate long wavelengths, keep short ones, ramp between; plus a temperature.

    Peng et al. 2023, "YaRN: Efficient Context Window Extension of Large Language Models", eq. 17-21:
    for a frequency w with wavelength lambda = 2 pi / w, r = L / lambda (turns over the training
    length L), ramp gamma(r) = 0 if r < alpha, 1 if r > beta, else (r - alpha) / (beta - alpha);
    w' = (1 - gamma) w / s + gamma w. The ramp is linear in turns r, as the paper writes it; transformers'
    `_compute_yarn_parameters` and the YaRN authors' code ramp linearly in the dimension index instead
    (linear in log r, between rounded boundaries), which on ViT grids puts the in-ramp factors 42-48%
    apart (jquesnelle/yarn #60). In 2D each component is treated on its own axis:
    r_x = tw |w_x| / (2 pi), w_x' = w_x ((1 - gamma(r_x)) / s_x + gamma(r_x)), likewise y, with
    s_a = max(1, g_a / t_a). Temperature: sqrt(1/t) = 0.1 ln s + 1 with s = sqrt(s_x s_y) (the linear
    scale; g / t on square grids); as in the reference code it multiplies q and k, so the logit
    scale is (0.1 ln s + 1)^2. alpha = 1, beta = 32 are the paper's LLaMA values.
    Shapes: freqs (L, H, D/2, 2) -> Positions.freqs (L, H, D/2, 2)
    """
    if not 0 <= alpha < beta:
        raise PositionMethodError(f"YaRN needs 0 <= alpha < beta, got alpha={alpha}, beta={beta}.")
    gh, gw, th, tw = _check_grids(grid, train_grid)
    sx, sy = max(1.0, gw / tw), max(1.0, gh / th)

    def factor(component: torch.Tensor, train_len: int, s: float) -> torch.Tensor:
        turns = train_len * component.abs() / (2 * math.pi)  # r = L / lambda
        gamma = ((turns - alpha) / (beta - alpha)).clamp(0.0, 1.0)
        return (1 - gamma) / s + gamma

    out = _scale_axes(freqs, factor(freqs[..., 0], tw, sx), factor(freqs[..., 1], th, sy))
    return Positions(out, yarn_temperature(math.sqrt(sx * sy)) ** 2)


def log_n(freqs: torch.Tensor, grid, train_grid, prefix_tokens: int = 0) -> Positions:
    """Log-N attention scaling: logits x log N / log N_train, N = every token a query attends to (the
    gh * gw patches plus `prefix_tokens`, filled in from the model when applied to one); frequencies as trained.

    Keeps the entropy of attention from growing with the token count. Chiang & Cholak 2022,
    "Overcoming a Theoretical Limitation of Self-Attention" (scale by log n); used for length and
    resolution extrapolation since (e.g. Su 2021 "entropy-invariant scaling"; Nakanishi 2025
    "Scalable-Softmax"). The one definition of log-N in rope-viz (the canvas study uses it too).
    Applied on every grid, so smaller grids get a scale below 1.
    Shapes: freqs (L, H, D/2, 2) -> Positions.freqs (L, H, D/2, 2) unchanged
    """
    gh, gw, th, tw = _check_grids(grid, train_grid)
    n, n_train = gh * gw + prefix_tokens, th * tw + prefix_tokens
    if n_train < 2:
        raise PositionMethodError("Log-N scaling needs a training grid of at least 2 tokens (log 1 = 0).")
    return Positions(freqs.clone(), math.log(n) / math.log(n_train))


NORMALISATIONS = ("separate", "max", "min")


def normalised(freqs: torch.Tensor, grid, train_grid, normalize: str = "separate") -> Positions:
    """DINOv3's normalised coordinates: patch centres mapped into [-1, 1], so rad/patch scale with 1/g.

    DINOv3 (Simeoni et al. 2025; timm `RotaryEmbeddingDinoV3`, grid 'centered'): coordinate
    c = 2 (i + 0.5) / d - 1, a step of 2/d per patch, with d the axis length ('separate'), or
    max(gh, gw) / min(gh, gw) for both axes ('max' / 'min', which keep the aspect ratio). A model
    trained at t steps 2/d_t, so on the grid w' = w * d_t / d: per axis w_x' = w_x * tw / gw for
    'separate' (the offset 0.5 cancels in q . k, so this equals `interpolate` exactly), and
    w' = w * max(th, tw) / max(gh, gw) on both axes for 'max' (min likewise). Logit scale 1.
    Shapes: freqs (L, H, D/2, 2) -> Positions.freqs (L, H, D/2, 2)
    """
    gh, gw, th, tw = _check_grids(grid, train_grid)
    if normalize == "separate":
        return Positions(_scale_axes(freqs, tw / gw, th / gh))
    if normalize in ("max", "min"):
        pick = max if normalize == "max" else min
        f = pick(th, tw) / pick(gh, gw)
        return Positions(_scale_axes(freqs, f, f))
    raise PositionMethodError(f"Unknown normalisation {normalize!r}; valid: {', '.join(NORMALISATIONS)}.")


def _drop_band(freqs: torch.Tensor, grid, train_grid, k: int, lowest: bool) -> Positions:
    _check_grids(grid, train_grid)
    half = freqs.shape[-2]
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= half:
        raise PositionMethodError(f"The number of pairs to switch off must be a whole number from 0 to {half}, got {k!r}.")
    mag = freqs.norm(dim=-1)  # (..., D/2)
    order = mag.argsort(dim=-1, descending=not lowest, stable=True)  # ties: the lower pair index first
    off = torch.zeros_like(mag, dtype=torch.bool).scatter(-1, order[..., :k], True)
    return Positions(freqs.masked_fill(off[..., None], 0.0))


def drop_low(freqs: torch.Tensor, grid, train_grid, k: int = 0) -> Positions:
    """Band ablation: rotation off (w_j = 0) for the k pairs with the lowest |w_j| of every layer and head,
    the model's own positions for the rest (p-RoPE drops the lowest frequencies: Barbero et al., ICLR 2025,
    "Round and Round We Go"). Ties go to the lower pair index. k = 0 is native. Logit scale 1.
    Shapes: freqs (L, H, D/2, 2) the model's own on `grid` -> Positions.freqs (L, H, D/2, 2)
    """
    return _drop_band(freqs, grid, train_grid, k, lowest=True)


def drop_high(freqs: torch.Tensor, grid, train_grid, k: int = 0) -> Positions:
    """Band ablation: rotation off for the k pairs with the highest |w_j| of every layer and head (the
    positional heads' band in Barbero et al. 2025); the rest as the model computes them. k = 0 is native.
    Shapes: freqs (L, H, D/2, 2) the model's own on `grid` -> Positions.freqs (L, H, D/2, 2)
    """
    return _drop_band(freqs, grid, train_grid, k, lowest=False)
