"""Model registry and loading: bundled checkpoints, timm hub weights, and local files.

Every source ends in the same place: a timm model built with dynamic_img_size=True, a state
dict read safely (rope_viz.checkpoints), converted by timm's own checkpoint filter, loaded
strictly, its APE resampling set (rope_viz.models.ape), and put in eval mode. A model's family, position
kind and prefix tokens come from its modules (rope_viz.adapters), never from its name.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from timm.data import resolve_model_data_config
from timm.models.eva import Eva

from rope_viz import adapters
from rope_viz.models import ape, towers
from rope_viz.scenes import data
from rope_viz.models.checkpoints import convert_checkpoint, fit_state, load_state_into, read_state_dict, unwrap
from rope_viz.errors import InputError
from rope_viz.models.hub import (HUB_MODELS, HUB_OFFLINE_HELP, class_names_for, hub_cached_file, hub_repo_id, hub_spec,
                          hub_weights_file, imagenet_class_names, meta_module)
from rope_viz.models.specs import (IMAGENET_MEAN, IMAGENET_STD, POS_KINDS, ModelLoadError, ModelSpec, check_resolution,
                            classifier_note, describe_module, needs_classifier, pos_label)

__all__ = ["ModelSpec", "LoadedModel", "ModelLoadError", "POS_KINDS", "HUB_MODELS", "list_models", "get_spec",
           "load_model", "register_local", "parse_local", "resolve_name", "with_ape_resample", "local_arch_choices",
           "available_models", "list_bundled", "build_module", "build_eva", "eva_architecture", "pos_label",
           "check_resolution", "needs_classifier", "classifier_note", "read_state_dict", "convert_checkpoint",
           "load_state_into", "unwrap", "hub_weights_file", "hub_cached_file", "hub_repo_id", "imagenet_class_names",
           "default_device", "device_description", "HUB_OFFLINE_HELP", "IMAGENET_MEAN", "IMAGENET_STD"]

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
BUNDLED_DIR = ASSETS_DIR / "models"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass
class LoadedModel:
    """A timm model in eval mode plus its spec; read-only once loaded (it may be shared)."""

    module: torch.nn.Module
    spec: ModelSpec
    device: str = "cpu"

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> the model's input on its device. Shapes: (B, 3, R, R) -> (B, 3, R, R) float32"""
        return data.normalise(images.to(self.device), self.spec.mean, self.spec.std)

    def preprocess(self, image, resolution: int) -> torch.Tensor:
        """Any PIL image -> the model's normalised input, as timm's eval transform for this model makes it:
        RGB, short side to floor(resolution / crop_pct) with the spec's interpolation, centre crop,
        normalise with the spec's mean/std (all read from timm's pretrained config for hub models).

        Shapes: -> (1, 3, R, R) float32 on self.device
        """
        check_resolution(resolution, self.spec.patch_size)
        pixels = data.resize_center_crop(data.to_rgb(image), resolution, self.spec.interpolation,
                                         self.spec.crop_pct)  # (3, R, R) in [0, 1]
        mean = torch.tensor(self.spec.mean).view(3, 1, 1)
        std = torch.tensor(self.spec.std).view(3, 1, 1)
        return ((pixels - mean) / std).unsqueeze(0).to(self.device)


def default_device() -> str:
    """CUDA when present, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_description(device: str | None = None) -> str:
    """A short human description of the compute device, e.g. 'CUDA: NVIDIA H100' or 'CPU (2 threads)'."""
    device = device or default_device()
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(torch.device(device))}"
    return f"CPU ({torch.get_num_threads()} threads)"


# ---------------------------------------------------------------- registry

def build_eva(architecture: dict, **kwargs) -> torch.nn.Module:
    """A timm Eva from a card's architecture dict, always with dynamic image size."""
    return Eva(**{**architecture, "dynamic_img_size": True, **kwargs})


def _bundled_spec(card_path: Path) -> ModelSpec:
    card = json.loads(card_path.read_text())
    weights = card_path.with_suffix(".safetensors")
    if not weights.exists():
        raise ModelLoadError(f"Bundled model card {card_path.name} has no {weights.name} beside it.")
    arch = card["architecture"]
    info = describe_module(build_eva(arch, device="meta"))
    info["train_res"] = int(card["train_res"])  # the card's word: what it was trained and measured at
    if card["pos"] != info["pos"]:
        raise ModelLoadError(f"Card {card_path.name} says pos {card['pos']!r} but its architecture is {info['pos']!r}.")
    info["ape_resample"] = card.get("ape_resample", "timm") if info["ape_resample"] else ""  # as its card was measured
    return ModelSpec(
        name=card["name"], source="bundled", num_classes=int(arch["num_classes"]),
        class_names=tuple(card["class_names"]), arch="eva", path=str(weights), label=card.get("label", card["name"]),
        mean=tuple(card.get("mean", IMAGENET_MEAN)), std=tuple(card.get("std", IMAGENET_STD)), card=card,
        mean_std_source="model card" if "mean" in card else "ImageNet default", head_size=int(arch["num_classes"]),
        **info,
    )


def bundled_dir() -> Path:
    """Where bundled checkpoints live; ROPE_VIZ_MODELS_DIR overrides (tests, private model zoos)."""
    return Path(os.environ.get("ROPE_VIZ_MODELS_DIR", BUNDLED_DIR))


def list_bundled(models_dir: Path | None = None) -> list[ModelSpec]:
    """Bundled models from `<dir>/*.json` cards with a `.safetensors` beside each; bad cards are skipped."""
    specs = []
    for card_path in sorted(Path(models_dir or bundled_dir()).glob("*.json")):
        try:
            specs.append(_bundled_spec(card_path))
        except (ModelLoadError, KeyError, ValueError, TypeError) as err:
            log.warning("skipping bundled model card %s: %s", card_path, err)
    return specs


_LOCAL: dict[str, ModelSpec] = {}


def _check_arch(arch: str) -> str:
    base = arch.split(".")[0]
    if base not in timm.list_models():
        raise ModelLoadError(f"Unknown architecture {arch!r}; use a timm model name such as "
                             "vit_small_patch16_rope_mixed_224 (see `python -m rope_viz info`).")
    return arch if timm.models.get_pretrained_cfg(arch) is not None else base


def register_local(path: str | os.PathLike, arch: str | None = None, name: str | None = None,
                   model_kwargs: dict | None = None) -> ModelSpec:
    """Register a local .safetensors/.pth/.pt/.bin checkpoint for a timm architecture (`arch`, a timm
    model name, optionally with a pretrained tag whose mean/std to use; `model_kwargs` for a variant
    of it, e.g. {"depth": 6, "img_size": 128}, passed to timm.create_model), or, without `arch`, a Hugging
    Face model directory (or a hub id in the local cache) whose vision tower is read (rope_viz.models.towers).

    The number of classes is read from the checkpoint's head, the family, position kind and prefix
    tokens from the built module. The weights are loaded once to check them, so a file that does not
    fit the architecture is never listed; the error is one sentence naming what was expected and found.
    """
    if name in HUB_MODELS or name in {s.name for s in list_bundled()}:
        raise ModelLoadError(f"The name {name} is taken by a bundled or hub model; choose another.")
    if not arch:
        spec = towers.tower_spec(path, name)
        _LOCAL[spec.name] = spec
        return spec
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"Checkpoint file {path} does not exist.")
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise ModelLoadError(f"Checkpoint {path.name} must be a .safetensors, .pth, .pt or .bin file.")
    arch = _check_arch(arch)
    state = unwrap(read_state_dict(path))
    head = state.get("head.weight")
    head_size = int(head.shape[0]) if isinstance(head, torch.Tensor) and head.ndim == 2 else 0
    model_kwargs = dict(model_kwargs or {})
    try:
        module = meta_module(arch, **{**model_kwargs, "num_classes": head_size})
    except TypeError as err:
        raise ModelLoadError(f"{arch} does not take these options ({err}).") from err
    fit_state(module, state, path.name)  # names and shapes only: a misfit is refused before a full build
    cfg = resolve_model_data_config(module)
    names = class_names_for(module, head_size) or tuple(f"class {i}" for i in range(head_size))
    info = describe_module(module)
    spec = ModelSpec(
        name=name or f"local:{path.name}", source="local", num_classes=len(names), class_names=names, arch=arch, path=str(path),
        label=f"{path.name} ({info['family_label']})", mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
        mean_std_source=f"timm pretrained_cfg of {arch}", interpolation=cfg["interpolation"],
        crop_pct=float(cfg["crop_pct"]), head_size=head_size, build_kwargs=tuple(sorted(model_kwargs.items())),
        **info,
    )
    load_model(spec)  # raises ModelLoadError naming the mismatch
    _LOCAL[spec.name] = spec
    return spec


def parse_local(argument: str) -> tuple[str, str] | None:
    """'PATH@ARCH' (a checkpoint file for a timm architecture) -> (path, arch); None for a plain name."""
    path, sep, arch = argument.rpartition("@")
    if not sep or not path or Path(path).suffix not in CHECKPOINT_SUFFIXES:
        return None
    return path, arch


def resolve_name(argument: str) -> str:
    """A model name, 'PATH@ARCH', or a Hugging Face model directory: the latter two are registered (once)
    and their name returned."""
    local = parse_local(argument)
    if local is None:
        if argument in _LOCAL or not Path(argument).expanduser().is_dir():
            return argument
        name = f"local:{Path(argument).expanduser().resolve().name}"
        if name not in _LOCAL:
            register_local(argument, name=name)
        return name
    path, arch = local
    name = f"local:{Path(path).name}@{arch}"
    if name not in _LOCAL:
        register_local(path, arch, name=name)
    return name


def local_arch_choices() -> list[str]:
    """Architectures offered for local checkpoints: every hub model (its tag picks timm's mean/std)
    and its plain timm architecture."""
    plain = {timm.models.get_pretrained_cfg(n).architecture for n in HUB_MODELS}
    return sorted(plain) + sorted(HUB_MODELS)


def list_models(models_dir: Path | None = None) -> list[ModelSpec]:
    """Every model the app can offer: bundled first, then hub, then registered local checkpoints."""
    return list_bundled(models_dir) + [hub_spec(n) for n in HUB_MODELS] + list(_LOCAL.values())


def get_spec(name: str, models_dir: Path | None = None) -> ModelSpec:
    """The spec called `name`; ModelLoadError naming the choices if there is none."""
    specs = {s.name: s for s in list_models(models_dir)}
    if name not in specs:
        raise ModelLoadError(f"Unknown model {name!r}; valid names: {', '.join(specs)}.")
    return specs[name]


def eva_architecture(pos: str, *, img_size: int, patch_size: int, embed_dim: int, depth: int,
                     num_heads: int, num_classes: int, mlp_ratio: float = 4.0,
                     init_values: float | None = 1e-5, global_pool: str = "token") -> dict:
    """Eva keyword arguments for the paper's five variants, mirroring timm's naver definitions."""
    if pos not in POS_KINDS:
        raise InputError(f"Unknown position kind {pos!r}; valid: {', '.join(POS_KINDS)}.")
    rope = pos != "ape"
    arch = dict(
        img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
        num_classes=num_classes, mlp_ratio=mlp_ratio, qkv_bias=True, init_values=init_values, class_token=True,
        global_pool=global_pool, no_embed_class=True, use_abs_pos_emb=pos.endswith("ape"), use_rot_pos_emb=rope,
    )
    if rope:
        mixed = pos.startswith("rope_mixed")
        arch.update(attn_type="rope", rope_grid_indexing="xy", rope_temperature=10.0 if mixed else 100.0,
                    rope_type="mixed" if mixed else "cat")
    return arch


# ---------------------------------------------------------------- loading

def build_module(spec: ModelSpec) -> torch.nn.Module:
    """The architecture of `spec` with freshly initialised weights."""
    if spec.source == "bundled":
        return build_eva(spec.card["architecture"])
    head = spec.num_classes if spec.head_size is None else spec.head_size
    sized = {} if adapters.get_family(spec.family).any_size else {"img_size": spec.train_res, "dynamic_img_size": True}
    return timm.create_model(spec.arch.split(".")[0], pretrained=False, num_classes=head,
                             **{**sized, **dict(spec.build_kwargs)})


def load_model(name: str | ModelSpec, device: str = "cpu") -> LoadedModel:
    """Build and load a registered model in eval mode on `device`, its APE resampling as the spec says.

    Raises ModelLoadError (a RopeVizError) with one sentence for any name, file or network problem.
    """
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    if spec.is_tower:
        return LoadedModel(module=towers.load_tower(spec).to(device), spec=spec, device=device)
    weights = hub_weights_file(spec.name) if spec.source == "hub" else spec.path
    module = build_module(spec)
    load_state_into(module, read_state_dict(weights), Path(weights).name)
    if spec.ape_resample:
        ape.set_ape_resampling(module, spec.ape_resample)
    module.eval().requires_grad_(False)
    return LoadedModel(module=module.to(device), spec=spec, device=device)


def with_ape_resample(spec: ModelSpec, mode: str) -> ModelSpec:
    """The same model with another APE resampling ("paper" | "timm"); models without APE are unchanged."""
    if mode not in ape.APE_RESAMPLING:
        raise ModelLoadError(f"Unknown APE resampling {mode!r}; valid: {', '.join(ape.APE_RESAMPLING)}.")
    return replace(spec, ape_resample=mode) if spec.ape_resample else spec


def available_models(models_dir: Path | None = None) -> list[ModelSpec]:
    """Models whose weights are on this machine now (bundled, local, hub weights in the cache)."""
    out = []
    for spec in list_models(models_dir):
        if spec.source != "hub":
            out.append(spec)
            continue
        try:
            if hub_cached_file(spec.name):
                out.append(spec)
        except ModelLoadError:
            pass
    return out
