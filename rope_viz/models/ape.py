"""Absolute position tables at other resolutions: the paper's resampling or timm's.

timm resamples an APE table with antialiased bicubic interpolation (`resample_abs_pos_embed`'s
default); naver's rope-vit code, whose numbers the paper reports, uses plain
`F.interpolate(mode="bicubic", align_corners=False)` without antialias. At 320 px that changes an
APE+RoPE model's logits by about 0.1, so numbers compared with the paper use the paper's way.

A model gets its way with `set_ape_resampling(module, mode)`: its `_pos_embed` then runs timm's own
code with antialias off (a context variable read by a thin wrapper around timm's resampler, so other
models and threads are untouched). The setting is an attribute of the model and survives deepcopy.
"""
from __future__ import annotations

import contextvars
import types

import timm.models.eva as timm_eva
import timm.models.vision_transformer as timm_vit
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from rope_viz import adapters
from rope_viz.errors import RopeVizError

APE_RESAMPLING = {
    "paper": "plain bicubic, no antialias (F.interpolate, align_corners=False), as naver's rope-vit code",
    "timm": "antialiased bicubic (timm's resample_abs_pos_embed default)",
    "own": "the model's own resampling in its forward (Qwen3-VL: bilinear, align_corners=True)",
}
_PAPER_WAY = contextvars.ContextVar("rope_viz_ape_paper_way", default=False)


def _resample(posemb, *args, **kwargs):
    """timm's resampler, with antialias off while a paper-way model builds its table (this thread only)."""
    if _PAPER_WAY.get():
        kwargs["antialias"] = False
    return resample_abs_pos_embed(posemb, *args, **kwargs)


# The two timm modules whose models resample APE tables in their forward (Eva, VisionTransformer).
for _timm_module in (timm_eva, timm_vit):
    _timm_module.resample_abs_pos_embed = _resample


def _paper_pos_embed(self, *args, **kwargs):
    token = _PAPER_WAY.set(True)
    try:
        return type(self)._pos_embed(self, *args, **kwargs)
    finally:
        _PAPER_WAY.reset(token)


def set_ape_resampling(module: torch.nn.Module, mode: str) -> None:
    """Make `module` resample its APE table the paper's way ("paper") or timm's ("timm").

    Call once, when the model is built (not per request). Raises RopeVizError for other modes.
    """
    if mode not in APE_RESAMPLING:
        raise RopeVizError(f"Unknown APE resampling {mode!r}; valid: {', '.join(APE_RESAMPLING)}.")
    module = adapters.body_of(module)
    if mode == "paper":
        module._pos_embed = types.MethodType(_paper_pos_embed, module)
    else:
        module.__dict__.pop("_pos_embed", None)
    module.rope_viz_ape_resample = mode


def ape_resampling_of(module: torch.nn.Module) -> str:
    """'paper', 'timm', or '' for models without an APE table."""
    module = adapters.body_of(module)
    if getattr(module, "pos_embed", None) is None:
        return ""
    return getattr(module, "rope_viz_ape_resample", "timm")


def resample_paper(table: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """The paper's resampling of a patch table (no prefix rows): plain bicubic, align_corners=False.

    Shapes: table (1, gh * gw, C) -> (1, new_gh * new_gw, C)
    """
    C = table.shape[-1]
    grid = table.reshape(1, *old_grid, C).permute(0, 3, 1, 2)  # (1, C, gh, gw)
    out = F.interpolate(grid.float(), size=new_grid, mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(1, -1, C).to(table.dtype)
