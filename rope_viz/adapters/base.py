"""What an adapter is: one model family's answers about a module, read from its modules, never its name.

An adapter says, for a module of its family: whether it matches, every layer's and head's frequency
vectors w_j in rad/patch for a patch grid, where patch (0, 0) sits (offset), the pair layout, the
prefix tokens that are never rotated (CLS, registers), the training grid, whether an absolute table
(APE) is added, which image sizes the forward takes, and how each attention receives its rotation
(`call`, rope_viz.adapters.calls). Positions in patch units: patch (x, y) sits at p = (x, y) + offset
and pair j turns by w_j . p.

Every method takes the *body*: the module whose `.blocks` run (a classifier wrapper's `.encoder`,
else the model itself); rope_viz.adapters.registry.resolve finds both once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import to_2tuple

from rope_viz.adapters.calls import ROPE_KWARG, RopeCall
from rope_viz.errors import InputError, RopeVizError
from rope_viz.rotary import rope2d


@dataclass(frozen=True)
class Convention:
    """How a family places patches. offset: (x, y) of patch (0, 0) in patch units; indexing: 'xy' when
    the first block of pairs follows x, 'ij' when it follows y (rows); pairs: 'interleaved' (2j, 2j+1),
    'half' (j, j + D/2) or 'axis-half' (two blocks of D/2 channels, pairs (j, j + D/4) within each)."""

    offset: tuple[float, float]
    indexing: str
    pairs: str


# ---------------------------------------------------------------- helpers the adapters share

def axis_pairs(wx: torch.Tensor, wy: torch.Tensor, indexing: str) -> torch.Tensor:
    """Axial pairs: a block along x and a block along y, in the module's channel order.

    Shapes: wx, wy (D/4,) -> (D/2, 2)"""
    zeros = torch.zeros_like(wx)
    x_block, y_block = torch.stack([wx, zeros], -1), torch.stack([zeros, wy], -1)
    return torch.cat([y_block, x_block] if indexing == "ij" else [x_block, y_block], dim=0)


def expand_heads(body, head: torch.Tensor) -> torch.Tensor:
    """One head's (D/2, 2) for every layer and head. Shapes: -> (L, H, D/2, 2)"""
    return head.float().expand(len(body.blocks), first_attn(body).num_heads, -1, -1).contiguous()


def first_attn(body):
    return body.blocks[0].attn


def rope_module(body):
    return getattr(body, "rope", None)


def has_cls(body) -> bool:
    return getattr(body, "cls_token", None) is not None


def num_registers(body) -> int:
    reg = getattr(body, "reg_token", None)
    return 0 if reg is None else int(reg.shape[1])


def patch_size(body) -> tuple[int, int]:
    """(ph, pw) in pixels, whatever form the patch embedder keeps it in (an int or a pair: timm's to_2tuple)."""
    ph, pw = to_2tuple(body.patch_embed.patch_size)
    return int(ph), int(pw)


def check_patch_multiple(patch: tuple[int, int], height: int, width: int,
                         error: type[RopeVizError] = InputError) -> None:
    """Raise `error` (InputError unless the caller has its own kind) with one sentence when an image of
    height x width pixels does not split into whole patches of `patch` = (ph, pw) pixels."""
    ph, pw = patch
    if height % ph or width % pw:
        size = f"{ph} px" if ph == pw else f"{ph} x {pw} px"
        raise error(f"Image size {height} x {width} px is not a multiple of the patch size ({size}).")


# ---------------------------------------------------------------- the adapter

class Adapter:
    """One kind of model. A family file subclasses it and overrides what differs from these defaults
    (timm's EvaAttention / AttentionRope layout: a `rope` module, CLS and registers as prefix tokens)."""

    key: str = ""
    label: str = ""
    library: str = "timm"  # where the model class lives: "timm" or "transformers" (the towers)
    kind: str = "axial"  # "axial" (each pair on one axis, fixed) | "mixed" (learned 2D per layer and head) | "ape"
    about: str = ""
    grid_dependent: bool = False  # rad/patch depends on the grid (normalised positions)
    any_size: bool = False  # patchifies any image size itself: built without img_size / dynamic_img_size
    call: RopeCall = ROPE_KWARG  # how each block's attention receives its rotation and lays out q/k
    port_note: str = ""  # one sentence where timm's port differs from the original, naming the method that gives it
    own_ape_resampling: bool = False  # the model resamples its APE table its own way (not timm's resampler)

    # -- recognition
    def matches(self, body: torch.nn.Module) -> bool:
        raise NotImplementedError

    # -- frequencies and positions
    def read_freqs(self, body, grid: tuple[int, int]) -> torch.Tensor | None:
        """Every layer's and head's vectors in rad/patch on `grid`. Shapes: -> (L, H, D/2, 2); None: no RoPE"""
        return None

    def offset(self, body, grid: tuple[int, int]) -> tuple[float, float]:
        """(x, y) of patch (0, 0) in patch units on `grid` (offsets cancel in q . k between patches)."""
        return 0.0, 0.0

    def layout(self, body) -> tuple[str, str]:
        """(indexing 'xy'|'ij', pairs 'interleaved'|'half'|'axis-half') of the module's channels."""
        rope = rope_module(body)
        half = bool(getattr(first_attn(body), "rotate_half", False))
        return getattr(rope, "grid_indexing", "xy"), "half" if half else "interleaved"

    def positions(self, body, grid: tuple[int, int]) -> torch.Tensor:
        """Patch positions (x, y) in patch units: integer indices plus the offset. Shapes: -> (gh * gw, 2)"""
        offset = self.offset(body, grid) if self.has_rope else (0.0, 0.0)
        return rope2d.grid_positions(*grid) + torch.tensor(offset, dtype=torch.float32)

    def convention(self, body, grid: tuple[int, int]) -> Convention:
        if not self.has_rope:
            return Convention((0.0, 0.0), "xy", "interleaved")
        return Convention(self.offset(body, grid), *self.layout(body))

    # -- tokens, grids, tables
    def prefix_tokens(self, body) -> dict[str, int]:
        """Tokens before the patches, never rotated: {'cls': 0|1, 'registers': n, 'total': cls + n}."""
        return {"cls": int(has_cls(body)), "registers": num_registers(body),
                "total": int(getattr(body, "num_prefix_tokens", 0))}

    def train_grid(self, body, module=None) -> tuple[int, int]:
        """The patch grid the model was built for (its img_size / patch size): (gh, gw). `module`: the model
        around the body (a classifier wrapper keeps timm's pretrained_cfg on itself, not on its encoder)."""
        grid = getattr(body.patch_embed, "grid_size", None)
        if grid is None:  # embedders that keep no image size: timm's pretrained input size
            cfg = getattr(body, "pretrained_cfg", None) or getattr(module, "pretrained_cfg", None)
            _, height, width = cfg["input_size"]
            ph, pw = patch_size(body)
            return height // ph, width // pw
        gh, gw = grid
        return int(gh), int(gw)

    def has_ape(self, body) -> bool:
        """A learned absolute table added to the patches."""
        return getattr(body, "pos_embed", None) is not None

    def check_image_size(self, body, height: int, width: int) -> None:
        """Raise FamilyError (one sentence) when the model's own forward refuses this size (pixels)."""

    def q_scale_point(self, attn):
        """Where q can be multiplied before the rotation, to scale the logits exactly (rotation is linear):
        (module, fn) with fn(output, scale) -> the module's output with q scaled; None where there is none."""
        q_norm = getattr(attn, "q_norm", None)
        return None if q_norm is None else (q_norm, lambda output, scale: output * scale)

    def build_rotation(self, body, freqs_layer: torch.Tensor, pos: torch.Tensor, grid: tuple[int, int]):
        """The rotation argument one layer's attention receives to turn patch p by freqs . p (self.call's form).
        Shapes: freqs_layer (H, D/2, 2) rad/patch, pos (gh * gw, 2) raster order"""
        return self.call.build(freqs_layer, pos, self.layout(body)[1])

    # -- derived
    @property
    def has_rope(self) -> bool:
        return self.kind != "ape"

    @property
    def learned(self) -> bool:
        return self.kind == "mixed"

    def display(self, body) -> str:
        """The label, plus ' + APE' where the model also adds an absolute table to RoPE."""
        return self.label + (" + APE" if self.has_rope and self.has_ape(body) else "")

    def pos(self, body) -> str:
        """ModelSpec.pos: 'ape', or the frequency kind ('rope_axial' | 'rope_mixed') plus '_ape' with a table."""
        if not self.has_rope:
            return "ape"
        return f"rope_{self.kind}" + ("_ape" if self.has_ape(body) else "")

    def __repr__(self) -> str:
        return f"<adapter {self.key}: {self.label}>"
