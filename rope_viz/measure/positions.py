"""Inference-time position methods as records, and running a model with one.

Each method is one `PositionMethod` record: its pure function (rope_viz.rotary.methods), its label,
its options, and its `base`: the frequencies it starts from, the model's vectors at its training grid
("train") or its own vectors on the grid ("native"). Pages, the CLI and the sweep read METHODS.

Methods (see each function for its formula and source):
  native       as the model computes it (the default): DINOv3 normalises, EVA-02/SBB/PE rescale onto
               their reference grid, naver and Gemma 4 rotate integer positions
  extrapolate  integer positions past the training grid (Heo et al. 2024)
  interpolate  positions squeezed into the training range (Chen et al. 2023; timm/EVA `ref_feat_shape`)
  ntk          NTK-aware base scaling per axis (bloc97 2023), generalised to learned frequencies
  yarn         YaRN per-frequency ramp (linear in turns, as the paper) + attention temperature, per axis
  log_n        logits x log N / log N_train (Chiang & Cholak 2022), frequencies as trained
  normalised   DINOv3's coordinates in [-1, 1] (Simeoni et al. 2025): rad/patch scale with 1/g
  drop_low/_high  band ablation: rotation off for the k lowest / highest |w| pairs (p-RoPE, Barbero et al. 2025)
Every method reaches the model through its adapter's override (rope_viz.adapters.override_freqs), the
only way positions are changed, plus a logit scale on q.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

from rope_viz import adapters
from rope_viz.rotary import methods as pure
from rope_viz.rotary.methods import (NORMALISATIONS, PositionMethodError, Positions, extrapolate,  # noqa: F401
                                     drop_high, drop_low, grid_scale, interpolate, log_n, native, normalised, ntk, yarn,
                                     yarn_temperature)

__all__ = ["Positions", "PositionMethod", "METHODS", "LABELS", "OPTIONS", "DEFAULT_METHOD", "PositionMethodError",
           "get_method", "split_method", "method_label", "drop_low", "drop_high", "compute_positions", "grid_scale", "scale_logits", "apply_method", "method_for_model",
           "method_head_freqs", "native", "extrapolate", "interpolate", "ntk", "yarn", "log_n", "normalised"]


@dataclass(frozen=True)
class PositionMethod:
    """One inference-time position method. fn: (freqs, grid, train_grid, **options) -> Positions."""

    name: str
    label: str
    fn: Callable[..., Positions]
    options: tuple[str, ...] = ()  # what a user may set
    base: str = "train"  # freqs it starts from: "train" (at the training grid) | "native" (the model's own on the grid)
    model_options: tuple[str, ...] = ()  # filled in from the model when applied to one (prefix_tokens)


METHODS: dict[str, PositionMethod] = {m.name: m for m in (
    PositionMethod("native", "native (as the model computes it)", pure.native, base="native"),
    PositionMethod("extrapolate", "extrapolate (integer positions past the grid)", pure.extrapolate),
    PositionMethod("interpolate", "interpolate (positions x t/g)", pure.interpolate, ("align_corners",)),
    PositionMethod("ntk", "NTK-aware (base per axis)", pure.ntk),
    PositionMethod("yarn", "YaRN-2D (paper's ramp in turns + temperature)", pure.yarn, ("alpha", "beta")),
    PositionMethod("log_n", "log-N logit scale", pure.log_n, model_options=("prefix_tokens",)),
    PositionMethod("normalised", "normalised coords (DINOv3)", pure.normalised, ("normalize",)),
    PositionMethod("drop_low", "drop the k lowest frequencies (p-RoPE)", pure.drop_low, ("k",), base="native"),
    PositionMethod("drop_high", "drop the k highest frequencies", pure.drop_high, ("k",), base="native"),
)}
DEFAULT_METHOD = "native"
LABELS = {name: m.label for name, m in METHODS.items()}
OPTIONS = {name: m.options for name, m in METHODS.items() if m.options}


def split_method(spec: str) -> tuple[str, dict]:
    """'drop_low:4' -> ('drop_low', {'k': 4}); a plain name -> (name, {}). The ':k' form names a band
    ablation in one string (CLI, sweep cells, CSV). Raises PositionMethodError for a bad one."""
    name, sep, arg = str(spec).partition(":")
    record = get_method(name)
    if not sep:
        return name, {}
    if record.options != ("k",) or not arg.isdigit():
        raise PositionMethodError(f"{spec!r} is not a method name, or 'drop_low:K' / 'drop_high:K' with a whole K.")
    return name, {"k": int(arg)}


def get_method(name: str) -> PositionMethod:
    """The record called `name` (a 'drop_low:K' form names its record); PositionMethodError (a ValueError)
    naming the valid ones otherwise."""
    name = str(name).partition(":")[0]
    if name not in METHODS:
        raise PositionMethodError(f"Unknown position method {name!r}; valid: {', '.join(METHODS)}.")
    return METHODS[name]


def method_label(spec: str) -> str:
    """The label of a method, with its k for a band ablation ('drop the 4 lowest frequencies (p-RoPE)')."""
    name, options = split_method(spec)
    label = LABELS[name]
    return label.replace("the k ", f"the {options['k']} ") if "k" in options else label


def compute_positions(method: str, freqs: torch.Tensor, grid, train_grid, **options) -> Positions:
    """Apply the method called `method`; unknown options raise TypeError naming the valid ones.

    `freqs` are what the method's `base` says (training-grid vectors for most, the model's own on `grid`
    for native).
    Shapes: freqs (..., D/2, 2) rad/patch -> Positions.freqs (..., D/2, 2) on `grid`
    """
    method, spec_options = split_method(method)
    options = {**spec_options, **options}
    record = get_method(method)
    allowed = record.options + record.model_options
    unknown = set(options) - set(allowed)
    if unknown:
        valid = ", ".join(record.options) or "none"
        raise TypeError(f"Unknown option(s) {', '.join(sorted(unknown))} for {method}; valid: {valid}.")
    return record.fn(freqs, grid, train_grid, **options)


# ---------------------------------------------------------------- applying to a model

@contextmanager
def scale_logits(module: torch.nn.Module, scale: float):
    """Within the context, the calling thread's forwards of `module` multiply every attention logit by `scale`.

    A forward hook on each attention's q (its adapter's q_scale_point: timm's q_norm output) multiplies q by
    `scale` before RoPE rotates it (rotation is linear, so q . k and hence the logits scale by exactly `scale`,
    in fused SDPA too).
    Hooks are prepended, so a capture's q_norm hook, entered before or after, records the scaled q;
    other threads' forwards through the same shared model are untouched; hooks come off in `finally`.
    A scale of 1 places no hook at all.
    """
    if scale == 1.0:
        yield module
        return
    owner = threading.get_ident()
    resolved = adapters.resolve(module)

    def hook(scale_q):
        def scaled(point, args, output):
            return scale_q(output, scale) if threading.get_ident() == owner else None
        return scaled

    handles = []
    try:
        for block in resolved.body.blocks:
            point = resolved.adapter.q_scale_point(block.attn)
            if point is None:
                raise PositionMethodError(f"{type(block.attn).__name__} has no q projection to scale its logits at.")
            handles.append(point[0].register_forward_hook(hook(point[1]), prepend=True))
        yield module
    finally:
        for handle in handles:
            handle.remove()


def method_for_model(module: torch.nn.Module, method: str, grid, train_grid=None, **options) -> Positions | None:
    """A method's frequencies and logit scale for one model on `grid`, or None when it changes nothing.

    The method starts from what its record's `base` names, read by the model's adapter: its vectors at the
    training grid, or its own vectors on `grid`. Models without RoPE (APE only) have no frequencies to
    move: only the method's logit scale applies to them (freqs None in the result).
    Shapes: grid (gh, gw) -> Positions.freqs (L, H, D/2, 2) or None
    """
    resolved = adapters.resolve(module)
    adapter, body = resolved.adapter, resolved.body
    method, spec_options = split_method(method)
    options = {**spec_options, **options}
    record = get_method(method)
    grid = tuple(int(v) for v in grid)
    train = tuple(int(v) for v in train_grid) if train_grid is not None else resolved.train_grid()
    from_model = {"prefix_tokens": adapter.prefix_tokens(body)["total"]}
    options = {**options, **{k: from_model[k] for k in record.model_options}}
    if not adapter.has_rope:
        if record.base == "native":
            return None  # nothing rotates, so nothing to keep or switch off
        scale = compute_positions(method, torch.ones(1, 1, 1, 2), grid, train, **options).logit_scale
        return None if scale == 1.0 else Positions(None, scale)
    if method == "native" and not options:
        return None  # the model's own forward
    if method == "extrapolate" and not adapter.grid_dependent and not options:
        return None  # integer-position families extrapolate by themselves: keep their own fast path
    base = adapter.read_freqs(body, grid if record.base == "native" else train).float()
    return compute_positions(method, base, grid, train, **options)


def method_head_freqs(freqs_head, method: str, grid, train_grid, native_head=None) -> tuple:
    """One head's vectors under a method, as numpy for figures: (freqs (D/2, 2) on `grid`, logit scale).

    `native_head`: the head's own vectors on `grid` as its model computes them (default: `freqs_head`,
    integer positions), for methods whose base is native.
    Shapes: freqs_head (D/2, 2) rad/patch at the training grid -> ((D/2, 2), float)
    """
    base = freqs_head if get_method(method).base == "train" or native_head is None else native_head
    out = compute_positions(method, torch.as_tensor(base)[None, None], grid, train_grid)
    return out.freqs[0, 0].numpy(), float(out.logit_scale)


@contextmanager
def apply_method(module: torch.nn.Module, method: str, grid, train_grid=None, **options):
    """Within the context, the calling thread's forwards of `module` at `grid` use a position method.

    Frequencies go in through the adapter's override (`adapters.override_freqs`: each attention's
    rotation argument replaced, for this thread only) and the logit scale through `scale_logits`; both
    hooks come off on exit, so the shared cached model is never changed. A capture inside the context
    records what the method does. Unknown methods raise PositionMethodError naming the valid ones.
    Shapes: grid (gh, gw) patches of the forward that follows
    """
    module = adapters.module_of(module)
    result = method_for_model(module, method, grid, train_grid, **options)
    if result is None:
        yield module
        return
    if result.freqs is None:
        with scale_logits(module, result.logit_scale):
            yield module
        return
    with adapters.override_freqs(module, result.freqs, tuple(grid)), scale_logits(module, result.logit_scale):
        yield module
