"""What the app knows about a model before loading it (ModelSpec), read from the model's own modules.

`describe_module` fills the family, position kind, prefix tokens and shapes from a built module
(often on the meta device: no memory, no weights), so nothing here looks at a model's name.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rope_viz import adapters
from rope_viz.errors import InputError, RopeVizError

POS_KINDS = ("ape", "rope_axial", "rope_mixed", "rope_axial_ape", "rope_mixed_ape")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Families whose APE numbers are compared with the paper's: resample its way by default.
PAPER_APE_FAMILIES = ("naver_axial", "naver_mixed", "ape")


class ModelLoadError(RopeVizError):
    """A model could not be listed or loaded; the message is one sentence meant for the UI."""


@dataclass(frozen=True)
class ModelSpec:
    """What the app needs to know about a model before loading it.

    pos: the five kinds of the paper, for every family: 'ape', or the frequency pattern
    ('rope_axial': every pair on one axis, fixed; 'rope_mixed': learned 2D per layer and head) plus
    '_ape' when an absolute table is added too. EVA-02 is 'rope_axial_ape', DINOv3 'rope_axial'.
    num_classes: classes the output means (0: no classifier, e.g. DINOv3 features, PE embeddings);
    head_size: the width of the module's head as built (may differ from num_classes, e.g. PE's 1024).
    """

    name: str
    source: str  # "bundled" | "hub" | "local"
    pos: str  # one of POS_KINDS
    patch_size: int
    train_res: int
    num_classes: int
    class_names: tuple[str, ...] = field(repr=False)
    arch: str = ""  # timm model name (hub, local) or "eva" (bundled: architecture in the card)
    path: str = ""  # checkpoint file (bundled, local)
    label: str = ""  # short human name for pickers
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    card: dict = field(default_factory=dict, repr=False, compare=False, hash=False)
    family: str = "naver_axial"  # adapters.FAMILIES key
    family_label: str = ""  # e.g. "DINOv3", "naver RoPE-Mixed + APE"
    num_prefix_tokens: int = 1  # CLS + registers, never rotated
    num_registers: int = 0
    head_size: int | None = None
    mean_std_source: str = ""  # where mean/std came from, e.g. "timm pretrained_cfg"
    interpolation: str = "bicubic"
    crop_pct: float = 1.0
    ape_resample: str = ""  # "paper" | "timm" | "own" (the model's own code) | "" (no APE table); see rope_viz.models.ape
    embed_dim: int = 0
    depth: int = 0
    num_heads: int = 0
    size_step: int = 0  # image sides must be multiples of this (px); 0: the patch size (towers: patch x merge)
    build_kwargs: tuple = ()  # (key, value) pairs passed to timm.create_model (local checkpoints of a variant)

    @property
    def display(self) -> str:
        return f"{self.label or self.name} [{self.source}]"

    @property
    def step(self) -> int:
        """Image sides must be multiples of this many pixels."""
        return self.size_step or self.patch_size

    @property
    def is_tower(self) -> bool:
        """A Hugging Face transformers vision tower (arch 'hf:<model_type>')."""
        return self.arch.startswith("hf:")

    @property
    def has_classifier(self) -> bool:
        return self.num_classes > 0

    @property
    def prefix_label(self) -> str:
        """'CLS', 'CLS + 4 registers', '1 register', 'none'."""
        cls = self.num_prefix_tokens - self.num_registers
        parts = (["CLS"] if cls else []) + ([f"{self.num_registers} register{'s' * (self.num_registers > 1)}"]
                                             if self.num_registers else [])
        return " + ".join(parts) or "none"


def describe_module(module: torch.nn.Module) -> dict:
    """ModelSpec fields read from a built module (any device, meta included): family, pos, tokens, shapes."""
    resolved = adapters.resolve(module)
    family, body = resolved.adapter, resolved.body
    tokens = family.prefix_tokens(body)
    ph, pw = adapters.patch_size(body)
    _, grid_w = resolved.train_grid()
    has_ape = family.has_ape(body)
    default_ape = "own" if family.own_ape_resampling else "paper" if family.key in PAPER_APE_FAMILIES else "timm"
    return dict(family=family.key, family_label=family.display(body), pos=family.pos(body),
                num_prefix_tokens=tokens["total"], num_registers=tokens["registers"], patch_size=ph,
                train_res=int(grid_w * pw), ape_resample=default_ape if has_ape else "",
                embed_dim=int(body.embed_dim), depth=len(body.blocks), num_heads=int(body.blocks[0].attn.num_heads))


def pos_label(pos: str) -> str:
    """Human name of a position kind: 'rope_mixed_ape' -> 'RoPE-Mixed + APE'."""
    names = {"ape": "APE", "rope_axial": "RoPE-Axial", "rope_mixed": "RoPE-Mixed"}
    if pos.endswith("_ape") and pos != "ape":
        return names[pos[: -len("_ape")]] + " + APE"
    if pos not in names:
        raise InputError(f"Unknown position kind {pos!r}; valid: {', '.join(POS_KINDS)}.")
    return names[pos]


def check_resolution(resolution: int, patch_size: int) -> None:
    """Raise InputError (a RopeVizError) unless `resolution` is a positive multiple of the patch size."""
    if not isinstance(resolution, int) or resolution < patch_size or resolution % patch_size:
        raise InputError(
            f"Resolution {resolution} px is not a positive multiple of the patch size ({patch_size} px)."
        )


def classifier_note(spec: ModelSpec, what: str) -> str:
    """One sentence saying why `what` (e.g. 'top-5') needs classes this model does not have."""
    return (f"{spec.label or spec.name} has no classifier head (it outputs {spec.family_label} features), "
            f"so {what} needs a model with classes.")


def needs_classifier(spec: ModelSpec, what: str) -> None:
    """Raise ModelLoadError with one sentence when `what` (e.g. 'an accuracy sweep') needs classes the model lacks."""
    if not spec.has_classifier:
        raise ModelLoadError(classifier_note(spec, what))
