"""Model families: where each kind of timm ViT keeps its positions, read from the model itself.

A family is recognised from the model's own modules and configuration (its rope module's class,
its attention class, its tokens, its rope grid settings), never from its name. For one family it
says how to read every layer's and head's frequency vectors w_j in rad/patch for a patch grid,
which prefix tokens are never rotated (CLS and registers), the position convention (offset of
patch 0, 'ij'/'xy', interleaved or half-split pairs), and how to change positions at inference
(`override_freqs`).

Positions in patch units: patch (x, y) of a gh x gw grid sits at p = (x, y) + offset, and timm
rotates its pair j by w_j . p. Grid-normalised families have grid-dependent w_j:
- EVA-02, SBB, Perception Encoder scale integer indices by ref_feat_shape / grid: w = band * ref / g;
- DINOv3 maps patch centres to [-1, 1]: coordinate 2 (i + 0.5 + o) / g - 1, so w = 4 pi / (period g)
  and the offset is 0.5 + o - g / 2 (per axis, grid-dependent).
- Gemma4's ViT rotates integer (x, y) patch indices; its head is an x block then a y block, each
  with half-split pairs ('axis-half'), and its attention takes (rope_cos, rope_sin) positionally.
Adding a family is one FAMILIES entry plus its parity test (tests/test_families.py).
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
from timm.layers.attention import AttentionRope
from timm.layers.pos_embed_sincos import RotaryEmbeddingCat, RotaryEmbeddingDinoV3, RotaryEmbeddingMixed
from timm.models.eva import EvaAttention
from timm.models.gemma4_vit import Gemma4Attention, Gemma4RotaryEmbedding2D

from rope_viz.rotary import rope2d as rope_math
from rope_viz.errors import FamilyError
from rope_viz.adapters.calls import ROPE_COS_SIN, ROPE_KWARG, RopeCall, rope_embed

__all__ = ["Family", "Convention", "FamilyError", "FAMILIES", "family_of", "get_family", "model_freqs",
           "rope_call", "positions", "convention", "train_grid", "check_image_size", "prefix_tokens", "rope_embed",
           "override_freqs", "RopeCall"]


@dataclass(frozen=True)
class Convention:
    """How a family places patches. offset: (x, y) of patch (0, 0) in patch units; indexing: 'xy' when
    the first block of pairs follows x, 'ij' when it follows y (rows); pairs: 'interleaved' (2j, 2j+1),
    'half' (j, j + D/2) or 'axis-half' (two blocks of D/2 channels, pairs (j, j + D/4) within each)."""

    offset: tuple[float, float]
    indexing: str
    pairs: str


# ---------------------------------------------------------------- readers (one per timm rope class)

def _axis_pairs(wx: torch.Tensor, wy: torch.Tensor, indexing: str) -> torch.Tensor:
    """Axial pairs: a block along x and a block along y, in the module's channel order.

    Shapes: wx, wy (D/4,) -> (D/2, 2)"""
    zeros = torch.zeros_like(wx)
    x_block, y_block = torch.stack([wx, zeros], -1), torch.stack([zeros, wy], -1)
    return torch.cat([y_block, x_block] if indexing == "ij" else [x_block, y_block], dim=0)


def _expand(module, head: torch.Tensor) -> torch.Tensor:
    """One head's (D/2, 2) for every layer and head. Shapes: -> (L, H, D/2, 2)"""
    return head.float().expand(len(module.blocks), module.blocks[0].attn.num_heads, -1, -1).contiguous()


def _cat_freqs(module, grid) -> torch.Tensor:
    rope = module.rope
    if rope.grid_type != "index":
        raise FamilyError(f"RotaryEmbeddingCat with a '{rope.grid_type}' grid is not a patch-index RoPE; "
                          "supported: 'index' grids (naver, EVA-02, SBB, Perception Encoder).")
    gh, gw = grid
    scale_y, scale_x = 1.0, 1.0
    if rope.ref_feat_shape is not None:  # EVA's scheme: indices rescaled onto the reference grid
        ref_h, ref_w = rope.ref_feat_shape
        scale_y, scale_x = ref_h / gh, ref_w / gw
    bands = rope.bands.detach().double().cpu()  # (D/4,) rad per index
    return _expand(module, _axis_pairs(bands * scale_x, bands * scale_y, rope.grid_indexing))


def _cat_offset(module, grid) -> tuple[float, float]:
    offset = float(module.rope.grid_offset)  # added to the index before any reference scaling
    return offset, offset


def _mixed_freqs(module, grid) -> torch.Tensor:
    freqs = module.rope.freqs.detach().float().cpu().permute(1, 2, 3, 0)  # (2, L, H, D/2) -> (L, H, D/2, 2)
    # timm multiplies component 0 by the grid's first coordinate: x for 'xy', the row (y) for 'ij'.
    return (freqs.flip(-1) if module.rope.grid_indexing == "ij" else freqs).contiguous()


def _no_offset(module, grid) -> tuple[float, float]:
    return 0.0, 0.0


def _dinov3_denominators(rope, grid) -> tuple[float, float]:
    gh, gw = grid
    if rope.normalize_coords == "min":
        return float(min(gh, gw)), float(min(gh, gw))
    if rope.normalize_coords == "max":
        return float(max(gh, gw)), float(max(gh, gw))
    return float(gh), float(gw)  # 'separate'


def _dinov3_freqs(module, grid) -> torch.Tensor:
    rope = module.rope
    d_h, d_w = _dinov3_denominators(rope, grid)
    periods = rope.periods.detach().double().cpu()  # (D/4,)
    # angle = 2 pi / period * (2 (i + 0.5 + o) / d - 1): 4 pi / (period d) rad per patch
    return _expand(module, _axis_pairs(4 * math.pi / (periods * d_w), 4 * math.pi / (periods * d_h),
                                       rope.grid_indexing))


def _dinov3_offset(module, grid) -> tuple[float, float]:
    rope = module.rope
    d_h, d_w = _dinov3_denominators(rope, grid)
    o = float(rope.grid_offset)
    return 0.5 + o - d_w / 2, 0.5 + o - d_h / 2


def _gemma4_freqs(module, grid) -> torch.Tensor:
    inv_freq = module.rotary_emb.inv_freq.detach().double().cpu()  # (D/4,) rad per index, theta^(-2i/(D/2))
    return _expand(module, _axis_pairs(inv_freq, inv_freq, "xy"))  # x block first: position_ids are (x, y)


def _timm_layout(module) -> tuple[str, str]:
    half = bool(getattr(_attn(module), "rotate_half", False))
    return module.rope.grid_indexing, "half" if half else "interleaved"


def _gemma4_layout(module) -> tuple[str, str]:
    return "xy", "axis-half"


# ---------------------------------------------------------------- matchers (module structure only)

def _rope(module):
    return getattr(module, "rope", None)


def _attn(module):
    return module.blocks[0].attn


def _has_cls(module) -> bool:
    return getattr(module, "cls_token", None) is not None


def _num_registers(module) -> int:
    reg = getattr(module, "reg_token", None)
    return 0 if reg is None else int(reg.shape[1])


def _has_ape(module) -> bool:
    """A learned absolute table: timm's pos_embed, or Gemma4's per-axis table indexed by patch coordinates."""
    return (getattr(module, "pos_embed", None) is not None
            or getattr(getattr(module, "patch_embed", None), "position_embedding_table", None) is not None)


def _gemma4(module) -> bool:
    return (isinstance(getattr(module, "rotary_emb", None), Gemma4RotaryEmbedding2D)
            and isinstance(_attn(module), Gemma4Attention))


def _ref_cat(module) -> bool:
    rope = _rope(module)
    return isinstance(rope, RotaryEmbeddingCat) and rope.ref_feat_shape is not None


@dataclass(frozen=True)
class Family:
    """One kind of timm ViT position scheme. `matches` looks at modules and configuration only."""

    key: str
    label: str
    matches: Callable[[torch.nn.Module], bool]
    read_freqs: Callable | None  # (module, grid) -> (L, H, D/2, 2) rad/patch; None: no RoPE
    read_offset: Callable | None  # (module, grid) -> (x, y) of patch 0 in patch units
    kind: str  # "axial" (each pair on one axis, fixed) | "mixed" (learned 2D per layer and head) | "ape"
    grid_dependent: bool = False  # rad/patch depends on the grid (normalised positions)
    about: str = ""
    layout: Callable = _timm_layout  # module -> (indexing 'xy'|'ij', pairs 'interleaved'|'half'|'axis-half')
    call: RopeCall = ROPE_KWARG  # how each block's attention receives its rotation and lays out q/k
    any_size: bool = False  # patchifies any image size itself: built without img_size / dynamic_img_size

    @property
    def has_rope(self) -> bool:
        return self.read_freqs is not None

    @property
    def learned(self) -> bool:
        return self.kind == "mixed"

    def display(self, module) -> str:
        """The label, plus ' + APE' where the model also adds an absolute table to RoPE."""
        ape = self.has_rope and _has_ape(module)
        return self.label + (" + APE" if ape else "")

    def pos(self, module) -> str:
        """ModelSpec.pos: 'ape', or the frequency kind ('rope_axial' | 'rope_mixed') plus '_ape' with a table."""
        if not self.has_rope:
            return "ape"
        return f"rope_{self.kind}" + ("_ape" if _has_ape(module) else "")


FAMILIES: tuple[Family, ...] = (
    Family("naver_mixed", "naver RoPE-Mixed", lambda m: isinstance(_rope(m), RotaryEmbeddingMixed),
           _mixed_freqs, _no_offset, "mixed",
           about="learned 2D frequencies per layer and head (timm RotaryEmbeddingMixed)"),
    Family("dinov3", "DINOv3", lambda m: isinstance(_rope(m), RotaryEmbeddingDinoV3), _dinov3_freqs,
           _dinov3_offset, "axial", grid_dependent=True,
           about="axial RoPE on patch centres normalised to [-1, 1], half-split pairs, registers"),
    Family("pe", "Perception Encoder", lambda m: _ref_cat(m) and isinstance(_attn(m), AttentionRope),
           _cat_freqs, _cat_offset, "axial", grid_dependent=True,
           about="axial RoPE on indices rescaled to a reference grid, offset 1, 'xy'"),
    Family("eva02", "EVA-02",
           lambda m: _ref_cat(m) and isinstance(_attn(m), EvaAttention) and _has_cls(m) and not _num_registers(m),
           _cat_freqs, _cat_offset, "axial", grid_dependent=True,
           about="axial RoPE on indices rescaled to a reference grid, 'ij', CLS token"),
    Family("sbb", "timm SBB RoPE", lambda m: _ref_cat(m) and isinstance(_attn(m), EvaAttention),
           _cat_freqs, _cat_offset, "axial", grid_dependent=True,
           about="axial RoPE on indices rescaled to a reference grid, register tokens"),
    Family("naver_axial", "naver RoPE-Axial",
           lambda m: isinstance(_rope(m), RotaryEmbeddingCat) and _rope(m).ref_feat_shape is None,
           _cat_freqs, _cat_offset, "axial",
           about="fixed axial frequencies on integer patch indices (timm RotaryEmbeddingCat)"),
    Family("gemma4", "Gemma4", _gemma4, _gemma4_freqs, _no_offset, "axial",
           about="axial RoPE on integer (x, y) patch indices, x block then y block of half-split pairs, "
                 "plus a per-axis learned table", layout=_gemma4_layout, call=ROPE_COS_SIN, any_size=True),
    Family("ape", "APE only", lambda m: _rope(m) is None and hasattr(m, "pos_embed") and hasattr(m, "blocks"),
           None, None, "ape", about="a learned absolute table, no rotary embedding"),
)
_BY_KEY = {f.key: f for f in FAMILIES}


def get_family(key: str) -> Family:
    """The family called `key`; FamilyError naming the valid keys otherwise."""
    if key not in _BY_KEY:
        raise FamilyError(f"Unknown model family {key!r}; valid: {', '.join(_BY_KEY)}.")
    return _BY_KEY[key]


def family_of(module: torch.nn.Module) -> Family:
    """The family of a timm model, from its modules. Raises FamilyError naming the supported kinds."""
    for family in FAMILIES:
        if family.matches(module):
            return family
    inner = getattr(module, "encoder", None)
    if isinstance(inner, torch.nn.Module) and hasattr(inner, "blocks"):  # e.g. Gemma4VitClassifier
        inner_family = next((f for f in FAMILIES if f.matches(inner)), None)
        if inner_family is not None:
            raise FamilyError(f"{type(module).__name__} wraps its {inner_family.label} encoder "
                              f"({type(inner).__name__}) and this tool reads models whose blocks are at the top; "
                              "use the encoder's architecture.")
    rope = _rope(module)
    found = type(rope).__name__ if rope is not None else type(module).__name__
    raise FamilyError(f"{found} is not a supported position scheme; supported: "
                      + ", ".join(f.label for f in FAMILIES) + " (timm Eva and VisionTransformer models).")


def rope_call(module: torch.nn.Module):
    """How the model's attentions receive their rotation (rope_calls): a stand-in rope module of our own
    (e.g. sweep.InterpolatedRope, collapse.ShiftedRope on a private copy) names its call; else the family's."""
    stand_in = getattr(_rope(module), "call", None)
    return stand_in if stand_in is not None else family_of(module).call


# ---------------------------------------------------------------- reading positions

def train_grid(module: torch.nn.Module) -> tuple[int, int]:
    """The patch grid the model was built for (its img_size / patch size): (gh, gw)."""
    grid = getattr(module.patch_embed, "grid_size", None)
    if grid is None:  # NaFlex-style embedders (Gemma4) keep no image size: timm's pretrained input size
        _, height, width = module.pretrained_cfg["input_size"]
        ph, pw = module.patch_embed.patch_size
        return height // ph, width // pw
    gh, gw = grid
    return int(gh), int(gw)


def model_freqs(module: torch.nn.Module, grid: tuple[int, int] | None = None) -> torch.Tensor | None:
    """Every layer's and head's frequency vectors in rad/patch for a patch grid (default: training grid).

    None for APE-only models. Shapes: -> (L, H, D/2, 2) float32, detached, on the CPU
    """
    family = family_of(module)
    if not family.has_rope:
        return None
    return family.read_freqs(module, tuple(grid) if grid is not None else train_grid(module)).float()


def positions(module: torch.nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """Patch positions (x, y) in patch units as the family places them: integer indices plus its offset.

    Shapes: -> (gh * gw, 2) float32, row-major
    """
    family = family_of(module)
    offset = family.read_offset(module, grid) if family.has_rope else (0.0, 0.0)
    return rope_math.grid_positions(*grid) + torch.tensor(offset, dtype=torch.float32)


def convention(module: torch.nn.Module, grid: tuple[int, int] | None = None) -> Convention:
    """The family's position convention for this model and grid."""
    family = family_of(module)
    if not family.has_rope:
        return Convention((0.0, 0.0), "xy", "interleaved")
    grid = tuple(grid) if grid is not None else train_grid(module)
    return Convention(family.read_offset(module, grid), *family.layout(module))


def check_image_size(module: torch.nn.Module, height: int, width: int) -> None:
    """Raise FamilyError (one sentence) when the model's own forward refuses this image size (in pixels):
    Gemma4's soft-token encoder pools k x k patches, so both sides must be multiples of k patches."""
    pool = getattr(module, "pooling_kernel_size", 0)
    if getattr(module, "global_pool", None) != "soft" or not pool:
        return
    ph, pw = module.patch_embed.patch_size
    if height % (pool * ph) or width % (pool * pw):
        raise FamilyError(f"This encoder pools {pool} x {pool} patches into soft tokens, so the image size must be a "
                          f"multiple of {pool * ph} px; {height} x {width} px is not.")


def prefix_tokens(module: torch.nn.Module) -> dict[str, int]:
    """Tokens before the patches, never rotated: {'cls': 0|1, 'registers': n, 'total': cls + n}."""
    return {"cls": int(_has_cls(module)), "registers": _num_registers(module),
            "total": int(getattr(module, "num_prefix_tokens", 0))}


# ---------------------------------------------------------------- inference-time positions

def _to(rope, device):
    return tuple(t.to(device) for t in rope) if isinstance(rope, tuple) else rope.to(device)


@contextmanager
def override_freqs(module: torch.nn.Module, freqs: torch.Tensor, grid: tuple[int, int]):
    """Within the context, forwards of `module` at `grid` by the calling thread only rotate q/k with
    `freqs` at the family's own positions (integer indices plus its offset, so CLS-patch logits match)
    instead of the model's own rope.

    A forward pre-hook (with_kwargs, prepended so a capture entered later or earlier sees the result)
    on each block's attention replaces its rotation argument (`rope`; Gemma4's rope_cos/rope_sin); other
    threads' forwards are untouched and the hooks are removed in `finally`. A forward by the calling
    thread at another grid raises. Gemma4 shares one rotation across heads: per-head freqs raise.
    Shapes: freqs (L, H, D/2, 2) float32 rad/patch for the patch grid (gh, gw)
    """
    family = family_of(module)
    if not family.has_rope:
        raise FamilyError(f"{family.label} models have no rotary frequencies to override.")
    depth, heads = len(module.blocks), _attn(module).num_heads
    if tuple(freqs.shape[:2]) != (depth, heads) or freqs.shape[-1] != 2:
        raise FamilyError(f"freqs of shape {tuple(freqs.shape)} do not fit this model: expected ({depth}, {heads}, D/2, 2).")
    gh, gw = grid
    device = next(module.parameters()).device
    pos = positions(module, grid)
    pairs, call, prefix = convention(module, grid).pairs, family.call, prefix_tokens(module)["total"]
    embeds = [_to(call.build(freqs[i].float(), pos, pairs), device) for i in range(depth)]  # fp32, as timm builds it
    owner = threading.get_ident()

    def replace(index):
        def hook(attn, args, kwargs):
            if threading.get_ident() != owner:
                return None  # another session's forward through the shared model
            tokens = args[0].shape[1] - prefix
            if tokens != gh * gw:
                raise FamilyError(f"override_freqs was set for a {gh} x {gw} grid but the forward has {tokens} patches.")
            return call.replace(args, kwargs, embeds[index])
        return hook

    handles = []
    try:
        for i, block in enumerate(module.blocks):
            handles.append(block.attn.register_forward_pre_hook(replace(i), with_kwargs=True, prepend=True))
        yield module
    finally:
        for handle in handles:
            handle.remove()
