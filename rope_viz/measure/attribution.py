"""Attributions with captum: what drove a ViT's answer, for APE and every RoPE kind.

Pixel methods (IG, saliency, SmoothGrad) differentiate the logit with respect to the input, through
timm's out-of-place RoPE (the naver reference rotates q and k in place, which breaks autograd).
Patch methods (occlusion, Grad-CAM, rollout) give one value per patch.

The loaded model may be shared by sessions, so nothing here changes it: Grad-CAM, which must tap a
block's output with a hook, works on a private copy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerGradCam, NoiseTunnel, Occlusion, Saliency
from timm.layers import RotaryEmbeddingMixed

from rope_viz import adapters, models, rope
from rope_viz.measure import capture
from rope_viz.runtime import memory
from rope_viz.errors import InputError, check_options
from rope_viz.runtime.locking import copy_model

# Every option a method knows, with its default; options of other methods are accepted and unused,
# so one set of settings (the Attribution page's) serves every method. Anything else is a TypeError.
OPTIONS = {
    "ig": {"steps": None, "max_steps": 512, "tolerance": 0.01, "internal_batch_size": 16, "baseline": "mean",
           "mean": (0.5,) * 3, "std": (0.25,) * 3},
    "saliency": {},
    "smoothgrad": {"samples": 16, "stdev": 0.15},
    "occlusion": {"batch": 16},
    "gradcam": {"block": None},
    "rollout": {"head_fusion": "mean"},
}
ALL_OPTIONS = tuple(name for options in OPTIONS.values() for name in options)
IG_START_STEPS = 32  # where the doubling starts: enough for smooth models, the page's old default
IG_BASELINES = ("mean", "black")


@dataclass
class Attribution:
    """Shapes: raw (B, 3, H, W) for pixel methods else None; map (B, H, W) pixel methods or (B, gh, gw)
    patch methods; delta (B,) IG's completeness error (logit units) else None; target (B,);
    logit_gap (B,) IG's f(x) - f(baseline) for the target else None."""

    method: str
    raw: torch.Tensor | None
    map: torch.Tensor
    delta: torch.Tensor | None
    target: torch.Tensor
    signed: bool  # whether `map` carries a sign (IG, occlusion) or is a magnitude
    steps: int | None = None  # IG: the steps used (chosen by doubling unless fixed)
    logit_gap: torch.Tensor | None = None
    capped: bool = False  # IG: max_steps was reached with |delta| still above tolerance * |gap|
    logits: torch.Tensor | None = None  # (B, C) the model's answer on x (the forward that picked the target)


class _GridTap(torch.nn.Module):
    """Identity on (B, C, gh, gw): a layer whose output captum's LayerGradCam can read as a feature map."""

    def forward(self, x):
        return x


class _TappedBlock(torch.nn.Module):
    """A ViT block whose patch tokens pass through a grid-shaped tap, so Grad-CAM sees (B, C, gh, gw)."""

    def __init__(self, block: torch.nn.Module, num_prefix_tokens: int, grid_of):
        super().__init__()
        self.block, self.npt, self.grid_of, self.tap = block, num_prefix_tokens, grid_of, _GridTap()

    def forward(self, x, *args, **kwargs):
        x = self.block(x, *args, **kwargs)  # (B, N, C)
        B, N, C = x.shape
        gh, gw = self.grid_of()
        patches = x[:, self.npt:].transpose(1, 2).reshape(B, C, gh, gw)  # tokens row-major -> grid
        patches = self.tap(patches)
        return torch.cat([x[:, :self.npt], patches.reshape(B, C, gh * gw).transpose(1, 2)], dim=1)


def attribute(loaded, x: torch.Tensor, method: str, target=None, **options) -> Attribution:
    """Attribute the target logit of each image to its pixels or patches.

    Args:
        loaded: LoadedModel or timm module (eval mode).
        x: normalised images (B, 3, H, W), H and W multiples of the patch size.
        method: one of METHODS.
        target: class index (int or (B,) tensor); None = each image's predicted class.
        options: ig: steps (None: doubled from 32 until |delta| <= tolerance * |logit gap|, at most
            max_steps (512); an int fixes them), tolerance (0.01), internal_batch_size (16),
            baseline ("mean" | "black"), mean/std (for "black"); smoothgrad: samples (16), stdev
            (0.15, in normalised units); occlusion: batch (16); gradcam: block (last);
            rollout: head_fusion ("mean"). Options of other methods are accepted and unused; any
            other name raises TypeError naming the valid ones.
    """
    check_options(options, ALL_OPTIONS, "attribute()")
    if method not in METHODS:
        raise InputError(f"Unknown attribution method {method!r}; valid: {', '.join(METHODS)}.")
    record = METHODS[method]
    _check_values(options)
    module = adapters.module_of(loaded)
    B, _, H, W = x.shape
    patch = adapters.patch_size(adapters.body_of(module))
    adapters.check_patch_multiple(patch, H, W)
    p = patch[0]  # the methods take square patches
    with torch.no_grad():
        logits = module(x).float()  # (B, C): picks the target, and the page shows its probabilities
    target = logits.argmax(-1) if target is None else torch.as_tensor(target, device=x.device).expand(B)
    x = x.detach().clone().requires_grad_(record.needs_grad and record.unit == "pixel")
    own = {k: options[k] for k in record.options if k in options}
    with torch.enable_grad() if record.needs_grad else torch.no_grad():
        result = record.fn(module, x, target, p, **own)
    result.logits = logits
    return result


# ---------------------------------------------------------------- the methods, one function each

def _rollout(module, x, target, patch: int, head_fusion: str = "mean") -> "Attribution":
    qk = capture.capture_qk(module, x)
    rows = capture.rollout(qk, head_fusion)  # (B, N, N)
    source = 0 if qk.num_prefix_tokens else (qk.num_tokens // 2)
    return Attribution("rollout", None, capture.to_grid(qk, rows[:, source]), None, target, signed=False)


def _saliency(module, x, target, patch: int) -> "Attribution":
    raw = Saliency(module).attribute(x, target=target, abs=True)
    return Attribution("saliency", raw, raw.amax(1), None, target, signed=False)


def _smoothgrad(module, x, target, patch: int, samples: int = 16, stdev: float = 0.15) -> "Attribution":
    tunnel = NoiseTunnel(Saliency(module))
    raw = tunnel.attribute(x, nt_type="smoothgrad", nt_samples=int(samples), nt_samples_batch_size=int(samples),
                           stdevs=float(stdev), target=target, abs=True)
    return Attribution("smoothgrad", raw, raw.amax(1), None, target, signed=False)


def _occlusion(module, x, target, patch: int, batch: int = 16) -> "Attribution":
    raw = Occlusion(module).attribute(x, sliding_window_shapes=(3, patch, patch), strides=(3, patch, patch),
                                      baselines=0.0, target=target, perturbations_per_eval=int(batch))
    return Attribution("occlusion", raw, raw[:, 0, ::patch, ::patch].contiguous(), None, target, signed=True)


def _gradcam(module, x, target, patch: int, block: int | None = None) -> "Attribution":
    gh, gw = x.shape[-2] // patch, x.shape[-1] // patch
    private = copy_model(module)  # the tap is a module swap: never on the shared model
    body = adapters.body_of(private)
    index = len(body.blocks) - 1 if block is None else int(block)
    if not 0 <= index < len(body.blocks):
        raise InputError(f"Block {index} is outside 0..{len(body.blocks) - 1}.")
    tapped = _TappedBlock(body.blocks[index], adapters.prefix_tokens(body)["total"], lambda: (gh, gw))
    body.blocks[index] = tapped
    cam = LayerGradCam(private, tapped.tap).attribute(x, target=target, relu_attributions=True)  # (B, 1, gh, gw)
    return Attribution("gradcam", None, cam[:, 0].detach(), None, target, signed=False)


def _check_values(options: dict) -> None:
    """One sentence (InputError) for an option value no method can use."""
    for name in ("max_steps", "internal_batch_size", "samples", "batch"):
        value = options.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"Attribution option {name} must be a whole number of at least 1, got {value!r}.")
    steps = options.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise InputError(f"IG steps must be a whole number of at least 1 (or None to choose them), got {steps!r}.")
    tolerance = options.get("tolerance", 0.01)
    if not isinstance(tolerance, (int, float)) or not (0 < tolerance and math.isfinite(tolerance)):
        raise InputError(f"IG tolerance must be a positive fraction of the logit gap, got {tolerance!r}.")
    if options.get("baseline", "mean") not in IG_BASELINES:
        raise InputError(f"Unknown IG baseline {options['baseline']!r}; valid: {', '.join(IG_BASELINES)}.")
    stdev = options.get("stdev", 0.15)
    if not isinstance(stdev, (int, float)) or not (stdev >= 0 and math.isfinite(stdev)):
        raise InputError(f"SmoothGrad stdev must be a non-negative number, got {stdev!r}.")


def integrated_gradients(module: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int | None = None,
                         max_steps: int = 512, tolerance: float = 0.01, internal_batch_size: int = 16,
                         baseline: str = "mean", mean=(0.5,) * 3, std=(0.25,) * 3) -> Attribution:
    """Integrated Gradients that chooses its steps: from IG_START_STEPS (or max_steps if smaller), the
    steps double until every image's |delta| <= tolerance * |f(x) - f(baseline)| for its target, or
    max_steps is reached (then `capped` is set). An int `steps` runs exactly that many once.

    Why: at a fixed 32 steps IG missed completeness by half the logit gap on RoPE-Axial, and the
    page showed the delta but let it stand. Shapes: x (B, 3, H, W), target (B,) -> raw (B, 3, H, W)
    """
    start = x.detach()
    reference = torch.zeros_like(start)  # the dataset mean in normalised units
    if baseline == "black":
        reference = ((0 - torch.tensor(mean)) / torch.tensor(std)).view(1, 3, 1, 1).to(start).expand_as(start)
    with torch.no_grad():
        idx = target.view(-1, 1)
        gap = (module(start).gather(1, idx) - module(reference).gather(1, idx))[:, 0].float()  # (B,)
    ig = IntegratedGradients(module)
    n = steps if steps is not None else min(IG_START_STEPS, max_steps)
    while True:
        raw, delta = ig.attribute(x, baselines=reference, target=target, n_steps=n,
                                  internal_batch_size=internal_batch_size, return_convergence_delta=True)
        delta = delta.detach().float()
        within = bool((delta.abs() <= tolerance * gap.abs()).all())
        if steps is not None or within or n >= max_steps:
            break
        n = min(2 * n, max_steps)
    raw = raw.detach()
    return Attribution("ig", raw, raw.sum(1), delta, target, signed=True, steps=n, logit_gap=gap,
                       capped=steps is None and not within)


@dataclass(frozen=True)
class AttributionMethod:
    """One attribution algorithm (as captum keeps one class per algorithm).

    fn: (module, x (B, 3, H, W), target (B,), patch px, **options) -> Attribution; options: the ones it
    reads, with defaults; signed: whether its map carries a sign; needs_grad: whether it differentiates
    through the model (pixel methods with respect to the input); unit: "pixel" (map (B, H, W)) or
    "patch" (map (B, gh, gw)).
    """

    name: str
    label: str
    fn: Callable[..., Attribution]
    options: dict = field(default_factory=dict)
    signed: bool = False
    needs_grad: bool = True
    unit: str = "pixel"


def _integrated_gradients(module, x, target, patch: int, **options) -> Attribution:
    return integrated_gradients(module, x, target, **options)


METHODS: dict[str, AttributionMethod] = {m.name: m for m in (
    AttributionMethod("ig", "Integrated Gradients", _integrated_gradients, OPTIONS["ig"], signed=True),
    AttributionMethod("saliency", "Saliency (|gradient|)", _saliency, OPTIONS["saliency"]),
    AttributionMethod("smoothgrad", "SmoothGrad (noise tunnel over saliency)", _smoothgrad, OPTIONS["smoothgrad"]),
    AttributionMethod("occlusion", "Occlusion (one patch at a time)", _occlusion, OPTIONS["occlusion"], signed=True,
                      needs_grad=False, unit="patch"),
    AttributionMethod("gradcam", "Grad-CAM on a block", _gradcam, OPTIONS["gradcam"], unit="patch"),
    AttributionMethod("rollout", "Attention rollout (no gradients)", _rollout, OPTIONS["rollout"], needs_grad=False,
                      unit="patch"),
)}
LABELS = {name: m.label for name, m in METHODS.items()}


def ig_columns(steps: int | None, delta: float | None, logit_gap: float | None) -> dict:
    """The table columns that say how far IG can be trusted; empty for other methods (delta None)."""
    if delta is None:
        return {}
    share = None if not logit_gap else round(100 * abs(delta) / abs(logit_gap), 3)
    return {"IG steps": steps, "IG delta (logit)": delta, "logit gap": logit_gap, "|delta| / gap %": share}


def ig_warning(steps: int | None, delta: float | None, logit_gap: float | None, capped: bool,
               tolerance: float = OPTIONS["ig"]["tolerance"]) -> str | None:
    """One sentence when IG's attributions do not add up to the logit gap within `tolerance`, else None."""
    if delta is None or (logit_gap and abs(delta) <= tolerance * abs(logit_gap)):
        return None
    share = "all of" if not logit_gap else f"{100 * abs(delta) / abs(logit_gap):.1f}% of"
    why = (f"the cap of {steps} steps was reached" if capped
           else f"{steps} fixed steps are too few; choose auto")
    return (f"Integrated Gradients misses completeness by {share} the logit gap ({why}), so its map does not "
            f"fully add up to the logit change.")


def completeness_gap(module: torch.nn.Module, x: torch.Tensor, attribution: Attribution, baseline=None) -> torch.Tensor:
    """IG's completeness check: sum of attributions minus (logit(x) - logit(baseline)). Shapes: -> (B,)"""
    baseline = torch.zeros_like(x) if baseline is None else baseline
    with torch.no_grad():
        idx = attribution.target.view(-1, 1)
        gap = module(x).gather(1, idx) - module(baseline).gather(1, idx)
    return attribution.raw.sum((1, 2, 3)) - gap[:, 0]


def randomized_copy(loaded, seed: int = 0) -> torch.nn.Module:
    """The same architecture with freshly initialised weights (Adebayo et al.'s model randomisation test).

    Every weight is drawn from a private torch.Generator: the same seed gives the same model in any
    session and thread, and the process-wide RNG is never reseeded. Matrices, embeddings and tokens
    get timm's truncated normal (std 0.02), biases zero, norms and layer scales their constructor
    values, and learned RoPE-Mixed frequencies a fresh mixed initialisation.
    """
    spec = loaded.spec
    module = models.build_module(spec).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(int(seed))
    rope_module = getattr(adapters.body_of(module), "rope", None)
    mixed = rope_module if isinstance(rope_module, RotaryEmbeddingMixed) else None
    with torch.no_grad():
        for parameter_name, param in module.named_parameters():
            if mixed is not None and param is mixed.freqs:
                two, depth, heads, half = param.shape  # timm stores (2, L, H, D/2)
                fresh = rope.mixed_freqs(2 * half, heads, theta=mixed.temperature, seed=int(seed), depth=depth)
                param.copy_(fresh.permute(3, 0, 1, 2))  # (L, H, D/2, 2) -> (2, L, H, D/2)
            elif param.dim() >= 2:
                torch.nn.init.trunc_normal_(param, std=0.02, generator=gen)
            elif parameter_name.rsplit(".", 1)[-1] == "bias":
                param.zero_()
    return module.to(loaded.device)


def randomized_model(loaded, seed: int = 0) -> models.LoadedModel:
    """randomized_copy as a LoadedModel with the same spec and device."""
    return models.LoadedModel(module=randomized_copy(loaded, seed), spec=loaded.spec, device=loaded.device)


def explain(loaded, pixels: np.ndarray, method: str, target: int | None = None, steps: int | None = None,
            block: int = -1) -> dict:
    """What the Attribution page shows for one model and image, from one attribution run.

    Args:
        pixels: uint8 (R, R, 3) as the model sees it. steps: IG steps (None: chosen by doubling, see
            integrated_gradients). block: Grad-CAM block (< 0: the last; clipped).
    Returns {map (h, w) numpy, target, predicted, probability, delta, logit_gap, steps, capped}
    (delta, logit_gap and steps None except IG). Shapes: pixels (R, R, 3) -> map (R/p, R/p) or (R, R)
    """
    x = loaded.normalise(torch.tensor(pixels).permute(2, 0, 1)[None])  # (1, 3, R, R)
    options = {"steps": steps, "mean": loaded.spec.mean, "std": loaded.spec.std}
    if block >= 0:
        options["block"] = min(block, len(adapters.body_of(loaded.module).blocks) - 1)
    with memory.out_of_memory_as_error(f"{LABELS.get(method, method)} on {loaded.spec.name}"):
        result = attribute(loaded, x, method, target=target, **options)
    probs = result.logits[0].softmax(-1)  # (C,)
    return {"map": result.map[0].detach().float().cpu().numpy(), "target": int(result.target[0]),
            "predicted": int(probs.argmax()), "probability": float(probs.max()),
            "delta": None if result.delta is None else float(result.delta[0]),
            "logit_gap": None if result.logit_gap is None else float(result.logit_gap[0]),
            "steps": result.steps, "capped": result.capped}
