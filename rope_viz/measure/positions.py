"""Inference-time position methods: run a RoPE ViT on a grid other than the one it was trained on.

Every method is a pure function of
  freqs       (L, H, D/2, 2) the model's frequency vectors w_j in rad/patch *at its training grid*
              (`rope.model_freqs(module, train_grid)`; for integer-position families such as naver's
              these are the same on every grid),
  grid        (gh, gw) the patch grid the model is run on,
  train_grid  (th, tw) the patch grid it was trained on,
and returns a `Positions`: new freqs (rad/patch on `grid`) plus a multiplier for the attention logits.

Why scaling freqs is enough: a patch at p = (x, y) rotates pair j by w_j . p, so multiplying every
position's x by a factor is the same as multiplying w_x by it (and y likewise). Offsets of the
position grid cancel in q_a . k_b, so methods that shift positions (DINOv3's patch centres) are
pure scalings too. Per-axis scale of the grid: s_x = gw / tw, s_y = gh / th.

Methods (see each function for its formula and source):
  extrapolate  as trained: integer positions continue past the training grid (Heo et al. 2024, the default)
  interpolate  positions squeezed into the training range (Chen et al. 2023; timm/EVA `ref_feat_shape`)
  ntk          NTK-aware base scaling per axis (bloc97 2023), generalised to learned frequencies
  yarn         YaRN per-frequency ramp by wavelength + attention temperature (Peng et al. 2023), per axis
  log_n        logits x log N / log N_train (Chiang & Cholak 2022), frequencies as trained
  normalised   DINOv3's coordinates in [-1, 1] (Simeoni et al. 2025): rad/patch scale with 1/g
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

from rope_viz.adapters import families
from rope_viz.errors import RopeVizError

__all__ = ["Positions", "METHODS", "PositionMethodError", "compute_positions", "grid_scale", "scale_logits", "apply_method",
           "method_for_model",
           "extrapolate", "interpolate", "ntk", "yarn", "log_n", "normalised"]


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

def extrapolate(freqs: torch.Tensor, grid, train_grid) -> Positions:
    """As trained: the same rad/patch on every grid, positions 0 .. g-1 (Heo et al., ECCV 2024; the default).

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
    w' = (1 - gamma) w / s + gamma w. In 2D each component is treated on its own axis:
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


def log_n(freqs: torch.Tensor, grid, train_grid) -> Positions:
    """Log-N attention scaling: logits x log N / log N_train, N = patches on the grid; frequencies as trained.

    Keeps the entropy of attention from growing with the token count. Chiang & Cholak 2022,
    "Overcoming a Theoretical Limitation of Self-Attention" (scale by log n); used for length and
    resolution extrapolation since (e.g. Su 2021 "entropy-invariant scaling"; Nakanishi 2025
    "Scalable-Softmax"). N counts the gh * gw patches (prefix tokens are a constant few). Applied
    on every grid, so smaller grids get a scale below 1.
    Shapes: freqs (L, H, D/2, 2) -> Positions.freqs (L, H, D/2, 2) unchanged
    """
    gh, gw, th, tw = _check_grids(grid, train_grid)
    if th * tw < 2:
        raise PositionMethodError("Log-N scaling needs a training grid of at least 2 patches (log 1 = 0).")
    return Positions(freqs.clone(), math.log(gh * gw) / math.log(th * tw))


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


METHODS: dict[str, Callable[..., Positions]] = {
    "extrapolate": extrapolate,
    "interpolate": interpolate,
    "ntk": ntk,
    "yarn": yarn,
    "log_n": log_n,
    "normalised": normalised,
}
LABELS = {
    "extrapolate": "extrapolate (as trained)",
    "interpolate": "interpolate (positions x t/g)",
    "ntk": "NTK-aware (base per axis)",
    "yarn": "YaRN-2D (ramp + temperature)",
    "log_n": "log-N logit scale",
    "normalised": "normalised coords (DINOv3)",
}
OPTIONS = {"interpolate": ("align_corners",), "yarn": ("alpha", "beta"), "normalised": ("normalize",)}


def get_method(name: str) -> Callable[..., Positions]:
    """The method function called `name`; PositionMethodError (a ValueError) naming the valid ones otherwise."""
    if name not in METHODS:
        raise PositionMethodError(f"Unknown position method {name!r}; valid: {', '.join(METHODS)}.")
    return METHODS[name]


def compute_positions(method: str, freqs: torch.Tensor, grid, train_grid, **options) -> Positions:
    """Apply the method called `method`; unknown options raise TypeError naming the valid ones.

    Shapes: freqs (..., D/2, 2) rad/patch at the training grid -> Positions.freqs (..., D/2, 2) on `grid`
    """
    fn = get_method(method)
    unknown = set(options) - set(OPTIONS.get(method, ()))
    if unknown:
        valid = ", ".join(OPTIONS.get(method, ())) or "none"
        raise TypeError(f"Unknown option(s) {', '.join(sorted(unknown))} for {method}; valid: {valid}.")
    return fn(freqs, grid, train_grid, **options)


# ---------------------------------------------------------------- applying to a model

@contextmanager
def scale_logits(module: torch.nn.Module, scale: float):
    """Within the context, the calling thread's forwards of `module` multiply every attention logit by `scale`.

    A forward hook on each attention's q_norm output multiplies q by `scale` before RoPE rotates it
    (rotation is linear, so q . k and hence the logits scale by exactly `scale`, in fused SDPA too).
    Hooks are prepended, so a capture's q_norm hook, entered before or after, records the scaled q;
    other threads' forwards through the same shared model are untouched; hooks come off in `finally`.
    A scale of 1 places no hook at all.
    """
    if scale == 1.0:
        yield module
        return
    owner = threading.get_ident()

    def hook(norm, args, output):
        return output * scale if threading.get_ident() == owner else None

    handles = []
    try:
        for block in module.blocks:
            q_norm = getattr(block.attn, "q_norm", None)
            if q_norm is None:
                raise PositionMethodError(f"{type(block.attn).__name__} has no q_norm to scale its logits at.")
            handles.append(q_norm.register_forward_hook(hook, prepend=True))
        yield module
    finally:
        for handle in handles:
            handle.remove()


def method_for_model(module: torch.nn.Module, method: str, grid, train_grid=None, **options) -> Positions | None:
    """A method's frequencies and logit scale for one model on `grid`, or None when it changes nothing.

    The method starts from the model's vectors at its training grid (`families.model_freqs(module,
    train_grid)`), for every family alike. Models without RoPE (APE only) have no frequencies to move:
    only the method's logit scale applies to them (freqs None in the result).
    Shapes: grid (gh, gw) -> Positions.freqs (L, H, D/2, 2) or None
    """
    module = getattr(module, "module", module)
    family = families.family_of(module)
    grid = tuple(int(v) for v in grid)
    train = tuple(int(v) for v in train_grid) if train_grid is not None else families.train_grid(module)
    if not family.has_rope:
        scale = compute_positions(method, torch.ones(1, 1, 1, 2), grid, train, **options).logit_scale
        return None if scale == 1.0 else Positions(None, scale)
    if method == "extrapolate" and not family.grid_dependent and not options:
        return None  # integer-position families extrapolate by themselves: keep their own fast path
    return compute_positions(method, families.model_freqs(module, train), grid, train, **options)


def method_head_freqs(freqs_head, method: str, grid, train_grid) -> tuple:
    """One head's vectors under a method, as numpy for figures: (freqs (D/2, 2) on `grid`, logit scale).

    Shapes: freqs_head (D/2, 2) rad/patch at the training grid -> ((D/2, 2), float)
    """
    out = compute_positions(method, torch.as_tensor(freqs_head)[None, None], grid, train_grid)
    return out.freqs[0, 0].numpy(), float(out.logit_scale)


@contextmanager
def apply_method(module: torch.nn.Module, method: str, grid, train_grid=None, **options):
    """Within the context, the calling thread's forwards of `module` at `grid` use a position method.

    Frequencies go in through `families.override_freqs` (each attention's `rope` argument replaced,
    for this thread only) and the logit scale through `scale_logits`; both hooks come off on exit,
    so the shared cached model is never changed. A capture inside the context records what the
    method does. Unknown methods raise PositionMethodError naming the valid ones.
    Shapes: grid (gh, gw) patches of the forward that follows
    """
    module = getattr(module, "module", module)
    result = method_for_model(module, method, grid, train_grid, **options)
    if result is None:
        yield module
        return
    if result.freqs is None:
        with scale_logits(module, result.logit_scale):
            yield module
        return
    with families.override_freqs(module, result.freqs, tuple(grid)), scale_logits(module, result.logit_scale):
        yield module
