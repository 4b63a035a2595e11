"""Attributions with captum: what drove a ViT's answer, for APE and every RoPE kind.

Pixel methods (IG, saliency, SmoothGrad) differentiate the logit with respect to the input, through
timm's out-of-place RoPE (the naver reference rotates q and k in place, which breaks autograd).
Patch methods (occlusion, Grad-CAM, rollout) give one value per patch.

The loaded model may be shared by sessions, so nothing here changes it: Grad-CAM, which must tap a
block's output with a hook, works on a private copy.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

METHODS = {
    "ig": "Integrated Gradients",
    "saliency": "Saliency (|gradient|)",
    "smoothgrad": "SmoothGrad (noise tunnel over saliency)",
    "occlusion": "Occlusion (one patch at a time)",
    "gradcam": "Grad-CAM on a block",
    "rollout": "Attention rollout (no gradients)",
}


@dataclass
class Attribution:
    """Shapes: raw (B, 3, H, W) for pixel methods else None; map (B, H, W) pixel methods or (B, gh, gw)
    patch methods; delta (B,) IG's convergence error (logit units) else None; target (B,)."""

    method: str
    raw: torch.Tensor | None
    map: torch.Tensor
    delta: torch.Tensor | None
    target: torch.Tensor
    signed: bool  # whether `map` carries a sign (IG, occlusion) or is a magnitude


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


def _module(loaded_or_module) -> torch.nn.Module:
    return getattr(loaded_or_module, "module", loaded_or_module)


def _patch(module) -> int:
    p = module.patch_embed.patch_size
    return int(p[0] if isinstance(p, (tuple, list)) else p)


def predicted(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Shapes: (B, 3, H, W) -> (B,) argmax classes"""
    with torch.no_grad():
        return module(x).argmax(-1)


def attribute(loaded, x: torch.Tensor, method: str, target=None, **options) -> Attribution:
    """Attribute the target logit of each image to its pixels or patches.

    Args:
        loaded: LoadedModel or timm module (eval mode).
        x: normalised images (B, 3, H, W), H and W multiples of the patch size.
        method: one of METHODS.
        target: class index (int or (B,) tensor); None = each image's predicted class.
        options: ig: steps (32), internal_batch_size (16), baseline ("mean" | "black");
            smoothgrad: samples (16), stdev (0.15, in normalised units); gradcam: block (last);
            rollout: head_fusion ("mean").
    """
    from captum.attr import IntegratedGradients, LayerGradCam, NoiseTunnel, Occlusion, Saliency

    if method not in METHODS:
        raise ValueError(f"Unknown attribution method {method!r}; valid: {', '.join(METHODS)}.")
    module = _module(loaded)
    B, _, H, W = x.shape
    p = _patch(module)
    if H % p or W % p:
        raise ValueError(f"Image size {H} x {W} px is not a multiple of the patch size ({p} px).")
    target = predicted(module, x) if target is None else torch.as_tensor(target, device=x.device).expand(B)
    gh, gw = H // p, W // p
    x = x.detach().clone().requires_grad_(method in ("ig", "saliency", "smoothgrad"))

    if method == "rollout":
        from rope_viz import capture

        qk = capture.capture_qk(module, x)
        rows = capture.rollout(qk, options.get("head_fusion", "mean"))  # (B, N, N)
        source = 0 if qk.num_prefix_tokens else (qk.num_tokens // 2)
        return Attribution(method, None, capture.to_grid(qk, rows[:, source]), None, target, signed=False)

    with torch.enable_grad():
        if method == "ig":
            baseline = torch.zeros_like(x)  # the dataset mean in normalised units
            if options.get("baseline", "mean") == "black":
                mean, std = options.get("mean", (0.5,) * 3), options.get("std", (0.25,) * 3)
                baseline = ((0 - torch.tensor(mean)) / torch.tensor(std)).view(1, 3, 1, 1).to(x).expand_as(x)
            ig = IntegratedGradients(module)
            raw, delta = ig.attribute(x, baselines=baseline, target=target, n_steps=int(options.get("steps", 32)),
                                      internal_batch_size=int(options.get("internal_batch_size", 16)),
                                      return_convergence_delta=True)
            return Attribution(method, raw, raw.sum(1), delta.detach(), target, signed=True)
        if method == "saliency":
            raw = Saliency(module).attribute(x, target=target, abs=True)
            return Attribution(method, raw, raw.amax(1), None, target, signed=False)
        if method == "smoothgrad":
            tunnel = NoiseTunnel(Saliency(module))
            raw = tunnel.attribute(x, nt_type="smoothgrad", nt_samples=int(options.get("samples", 16)),
                                   nt_samples_batch_size=int(options.get("samples", 16)),
                                   stdevs=float(options.get("stdev", 0.15)), target=target, abs=True)
            return Attribution(method, raw, raw.amax(1), None, target, signed=False)
        if method == "occlusion":
            raw = Occlusion(module).attribute(x, sliding_window_shapes=(3, p, p), strides=(3, p, p),
                                              baselines=0.0, target=target,
                                              perturbations_per_eval=int(options.get("batch", 16)))
            return Attribution(method, raw, raw[:, 0, ::p, ::p].contiguous(), None, target, signed=True)
        # gradcam
        private = copy.deepcopy(module)  # the tap is a module swap: never on the shared model
        index = int(options.get("block", len(private.blocks) - 1))
        if not 0 <= index < len(private.blocks):
            raise ValueError(f"Block {index} is outside 0..{len(private.blocks) - 1}.")
        tapped = _TappedBlock(private.blocks[index], private.num_prefix_tokens, lambda: (gh, gw))
        private.blocks[index] = tapped
        cam = LayerGradCam(private, tapped.tap).attribute(x, target=target, relu_attributions=True)  # (B, 1, gh, gw)
        return Attribution(method, None, cam[:, 0].detach(), None, target, signed=False)


def completeness_gap(module: torch.nn.Module, x: torch.Tensor, attribution: Attribution, baseline=None) -> torch.Tensor:
    """IG's completeness check: sum of attributions minus (logit(x) - logit(baseline)). Shapes: -> (B,)"""
    baseline = torch.zeros_like(x) if baseline is None else baseline
    with torch.no_grad():
        idx = attribution.target.view(-1, 1)
        gap = module(x).gather(1, idx) - module(baseline).gather(1, idx)
    return attribution.raw.sum((1, 2, 3)) - gap[:, 0]


def randomized_copy(loaded, seed: int = 0) -> torch.nn.Module:
    """The same architecture with freshly initialised weights (Adebayo et al.'s model randomisation test)."""
    from rope_viz import models

    torch.manual_seed(seed)
    spec = loaded.spec
    module = models.build_module(spec).eval().requires_grad_(False)
    return module.to(loaded.device)
