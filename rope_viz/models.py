"""Model registry and loading: bundled checkpoints, timm hub weights, and local files.

Every source ends in the same place: a timm model built with dynamic_img_size=True, a state
dict read safely (safetensors or torch.load(weights_only=True)), converted by timm's own
checkpoint filter, loaded strictly, and put in eval mode.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import socket
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from safetensors.torch import load_file
from timm.data import ImageNetInfo
from timm.models.eva import Eva

from rope_viz import data
from rope_viz.errors import InputError, RopeVizError

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
BUNDLED_DIR = ASSETS_DIR / "models"
POS_KINDS = ("ape", "rope_axial", "rope_mixed", "rope_axial_ape", "rope_mixed_ape")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The naver RoPE-ViT ImageNet-1k models in timm, and DeiT-III as their APE reference.
HUB_MODELS = tuple(
    f"vit_{size}_patch16_rope{kind}_224.naver_in1k"
    for kind in ("", "_mixed", "_ape", "_mixed_ape")
    for size in ("small", "base", "large")
) + tuple(f"deit3_{size}_patch16_224.fb_in1k" for size in ("small", "base", "large"))

HUB_OFFLINE_HELP = (
    "run `python -m rope_viz download {name}` on a machine with internet access "
    "(or copy its Hugging Face cache to {cache}), then reload."
)


class ModelLoadError(RopeVizError):
    """A model could not be listed or loaded; the message is one sentence meant for the UI."""


@dataclass(frozen=True)
class ModelSpec:
    """What the app needs to know about a model before loading it."""

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

    @property
    def display(self) -> str:
        return f"{self.label or self.name} [{self.source}]"


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
        """Any PIL image -> the model's normalised input: RGB, resize the short side to
        `resolution` (bicubic), centre crop square, normalise with the model's mean/std.

        Shapes: -> (1, 3, R, R) float32 on self.device
        """
        check_resolution(resolution, self.spec.patch_size)
        pixels = data.resize_center_crop(data.to_rgb(image), resolution)  # (3, R, R) in [0, 1]
        mean = torch.tensor(self.spec.mean).view(3, 1, 1)
        std = torch.tensor(self.spec.std).view(3, 1, 1)
        return ((pixels - mean) / std).unsqueeze(0).to(self.device)


def check_resolution(resolution: int, patch_size: int) -> None:
    """Raise InputError (a RopeVizError) unless `resolution` is a positive multiple of the patch size."""
    if not isinstance(resolution, int) or resolution < patch_size or resolution % patch_size:
        raise InputError(
            f"Resolution {resolution} px is not a positive multiple of the patch size ({patch_size} px)."
        )


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

def pos_from_arch(arch: str) -> str:
    """Position kind from a timm model name (naver RoPE names, or any plain ViT = APE)."""
    base = arch.split(".")[0]
    if "_rope" not in base:
        return "ape"
    kind = "rope_mixed" if "_rope_mixed" in base else "rope_axial"
    return kind + "_ape" if base.endswith("_ape_224") else kind


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """ImageNet-1k class descriptions from timm's bundled metadata (no download)."""
    return tuple(ImageNetInfo().label_descriptions(as_dict=False))


def _hub_spec(name: str) -> ModelSpec:
    size = name.split("_")[1]
    return ModelSpec(
        name=name, source="hub", pos=pos_from_arch(name), patch_size=16, train_res=224,
        num_classes=1000, class_names=imagenet_class_names(), arch=name,
        label=f"{size.capitalize()} {pos_label(pos_from_arch(name))} (ImageNet)",
    )


def pos_label(pos: str) -> str:
    """Human name of a position kind: 'rope_mixed_ape' -> 'RoPE-Mixed + APE'."""
    names = {"ape": "APE", "rope_axial": "RoPE-Axial", "rope_mixed": "RoPE-Mixed"}
    if pos.endswith("_ape") and pos != "ape":
        return names[pos[: -len("_ape")]] + " + APE"
    if pos not in names:
        raise InputError(f"Unknown position kind {pos!r}; valid: {', '.join(POS_KINDS)}.")
    return names[pos]


def _bundled_spec(card_path: Path) -> ModelSpec:
    card = json.loads(card_path.read_text())
    weights = card_path.with_suffix(".safetensors")
    if not weights.exists():
        raise ModelLoadError(f"Bundled model card {card_path.name} has no {weights.name} beside it.")
    arch = card["architecture"]
    if card["pos"] not in POS_KINDS:
        raise ModelLoadError(f"Card {card_path.name} has unknown pos {card['pos']!r}.")
    return ModelSpec(
        name=card["name"], source="bundled", pos=card["pos"], patch_size=int(arch["patch_size"]),
        train_res=int(card["train_res"]), num_classes=int(arch["num_classes"]),
        class_names=tuple(card["class_names"]), arch="eva", path=str(weights),
        label=card.get("label", card["name"]), mean=tuple(card.get("mean", IMAGENET_MEAN)),
        std=tuple(card.get("std", IMAGENET_STD)), card=card,
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


def register_local(path: str | os.PathLike, arch: str, name: str | None = None) -> ModelSpec:
    """Register a local .safetensors/.pth/.pt checkpoint for a named timm architecture.

    The number of classes is read from the checkpoint's head. The weights are loaded once to
    check them, so a file that does not fit the architecture is never listed.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"Checkpoint file {path} does not exist.")
    if path.suffix not in (".safetensors", ".pth", ".pt", ".bin"):
        raise ModelLoadError(f"Checkpoint {path.name} must be a .safetensors, .pth, .pt or .bin file.")
    base = arch.split(".")[0]
    if base not in timm.list_models():
        raise ModelLoadError(f"Unknown architecture {arch!r}; use a timm model name such as vit_small_patch16_rope_mixed_224.")
    state = _unwrap(read_state_dict(path))
    head = state.get("head.weight")
    num_classes = int(head.shape[0]) if head is not None else 1000
    names = imagenet_class_names() if num_classes == 1000 else tuple(f"class {i}" for i in range(num_classes))
    proj = state.get("patch_embed.proj.weight")  # (C, 3, p, p); absent in linear-patchify layouts
    patch = int(proj.shape[-1]) if proj is not None and proj.ndim == 4 else 16
    spec = ModelSpec(
        name=name or f"local:{path.name}", source="local", pos=pos_from_arch(base), patch_size=int(patch),
        train_res=224, num_classes=num_classes, class_names=names, arch=base, path=str(path),
        label=f"{path.name} ({pos_label(pos_from_arch(base))})",
    )
    load_model(spec)  # raises ModelLoadError naming the mismatch
    _LOCAL[spec.name] = spec
    return spec


def list_models(models_dir: Path | None = None) -> list[ModelSpec]:
    """Every model the app can offer: bundled first, then hub, then registered local checkpoints."""
    return list_bundled(models_dir) + [_hub_spec(n) for n in HUB_MODELS] + list(_LOCAL.values())


def get_spec(name: str, models_dir: Path | None = None) -> ModelSpec:
    """The spec called `name`; ModelLoadError naming the choices if there is none."""
    specs = {s.name: s for s in list_models(models_dir)}
    if name not in specs:
        raise ModelLoadError(f"Unknown model {name!r}; valid names: {', '.join(specs)}.")
    return specs[name]


# ---------------------------------------------------------------- checkpoints

def read_state_dict(path: str | os.PathLike) -> dict:
    """Read a checkpoint without unpickling arbitrary objects (safetensors, or weights_only=True)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError as err:  # the file may be fine: say what happened, not "corrupt"
        size = path.stat().st_size / 2**20 if path.exists() else float("nan")
        raise ModelLoadError(f"There was not enough free memory to read checkpoint {path.name} ({size:.0f} MiB); "
                             f"close other work or use a machine with more memory.") from err
    except OSError as err:
        if isinstance(err, (PermissionError, FileNotFoundError, IsADirectoryError)):
            raise ModelLoadError(f"Could not open checkpoint {path.name} ({type(err).__name__}).") from err
        raise ModelLoadError(
            f"Could not read checkpoint {path.name}: it is not a valid {path.suffix} weights file ({type(err).__name__})."
        ) from err
    except pickle.UnpicklingError as err:  # weights_only refused something that is not a tensor
        raise ModelLoadError(f"Checkpoint {path.name} holds Python objects besides tensors; it is refused because "
                             f"unpickling them could run code (torch.load with weights_only=True).") from err
    except Exception as err:  # corrupt files raise many types; the user needs one sentence
        raise ModelLoadError(
            f"Could not read checkpoint {path.name}: it is not a valid {path.suffix} weights file ({type(err).__name__})."
        ) from err


def _unwrap(state: dict) -> dict:
    """Strip training wrappers ({'model': ...}, {'state_dict': ...}) down to the tensors."""
    for key in ("model_ema", "model", "module", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise ModelLoadError("The checkpoint holds no state dict of tensors.")
    return state


def convert_checkpoint(state: dict, module: torch.nn.Module) -> dict:
    """Bring a checkpoint to the module's own key layout with timm's checkpoint filter, plus
    naver rope-vit's names: top-level `freqs` (2, L, H*D/2) -> `rope.freqs` (2, L, H, D/2)."""
    state = dict(_unwrap(state))
    for buffer in ("freqs_t_x", "freqs_t_y", "freqs_cis"):
        state.pop(buffer, None)  # naver's derived buffers: rebuilt by timm
    if "freqs" in state and "rope.freqs" not in state and getattr(module, "rope", None) is not None:
        state["rope.freqs"] = state.pop("freqs").reshape(module.rope.freqs.shape)
    filter_fn = getattr(sys.modules[type(module).__module__], "checkpoint_filter_fn", None)
    return filter_fn(state, module) if filter_fn is not None else state


def load_state_into(module: torch.nn.Module, state: dict, source: str) -> None:
    """Load converted weights strictly; mismatches become one sentence naming the first keys."""
    state = convert_checkpoint(state, module)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise ModelLoadError(f"Checkpoint {source} does not match the architecture: keys {' and '.join(parts)}.")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise ModelLoadError(
                f"Checkpoint {source} does not match the architecture: {key} has shape "
                f"{tuple(value.shape)}, the model expects {tuple(own[key].shape)}."
            )
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def build_eva(architecture: dict) -> torch.nn.Module:
    """A timm Eva from a card's architecture dict, always with dynamic image size."""
    return Eva(**{**architecture, "dynamic_img_size": True})


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


# ---------------------------------------------------------------- hub

def hub_repo_id(name: str) -> str:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise ModelLoadError(f"timm has no Hugging Face weights registered for {name}.")
    return cfg.hf_hub_id if cfg.hf_hub_id != "timm/" else f"timm/{name}"


def _hub_reachable(timeout: float = 3.0) -> bool:
    """True if the Hugging Face endpoint accepts a TCP connection within `timeout` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_cached_file(name: str) -> str | None:
    """Path of the model's weights in the local Hugging Face cache, or None."""
    repo = hub_repo_id(name)
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return found
    return None


def hub_weights_file(name: str) -> str:
    """Local path of hub weights: from the cache, else downloaded; fails fast when offline."""
    cached = hub_cached_file(name)
    if cached:
        return cached
    if not _hub_reachable():
        raise ModelLoadError(
            f"Weights for {name} are not downloaded and the Hugging Face hub cannot be reached: "
            + HUB_OFFLINE_HELP.format(name=name, cache=constants.HF_HUB_CACHE)
        )
    try:
        return hf_hub_download(hub_repo_id(name), "model.safetensors", etag_timeout=10)
    except Exception as err:
        raise ModelLoadError(f"Downloading weights for {name} failed ({type(err).__name__}: {err}).") from err


# ---------------------------------------------------------------- loading

def build_module(spec: ModelSpec) -> torch.nn.Module:
    """The architecture of `spec` with freshly initialised weights."""
    if spec.source == "bundled":
        return build_eva(spec.card["architecture"])
    return timm.create_model(spec.arch.split(".")[0], pretrained=False, num_classes=spec.num_classes,
                             dynamic_img_size=True)


def load_model(name: str | ModelSpec, device: str = "cpu") -> LoadedModel:
    """Build and load a registered model in eval mode on `device`.

    Raises ModelLoadError (a ValueError) with one sentence for any name, file or network problem.
    """
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    weights = hub_weights_file(spec.name) if spec.source == "hub" else spec.path
    module = build_module(spec)
    load_state_into(module, read_state_dict(weights), Path(weights).name)
    module.eval().requires_grad_(False)
    return LoadedModel(module=module.to(device), spec=spec, device=device)


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
