"""timm hub models: a curated list covering every family, specs from timm's own configuration,
and weights from the Hugging Face cache (downloads fail fast when offline).

Specs are read from a module built on the meta device (no memory, no weights) and from
`timm.data.resolve_model_data_config` (mean, std, input size, interpolation, crop): nothing is
parsed out of a model's name.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import threading
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from timm.data import ImageNetInfo, infer_imagenet_subset, resolve_model_data_config

from rope_viz import adapters
from rope_viz.models import specs
from rope_viz.models.specs import ModelLoadError, ModelSpec, describe_module

# The naver RoPE-ViT ImageNet-1k models in timm, and DeiT-III as their APE reference (the paper's).
PAPER_MODELS = tuple(
    f"vit_{size}_patch16_rope{kind}_224.naver_in1k"
    for kind in ("", "_mixed", "_ape", "_mixed_ape")
    for size in ("small", "base", "large")
) + tuple(f"deit3_{size}_patch16_224.fb_in1k" for size in ("small", "base", "large"))
# Every other family at small and base size (tiny where timm has it).
FAMILY_MODELS = (
    "eva02_tiny_patch14_336.mim_in22k_ft_in1k",
    "eva02_small_patch14_336.mim_in22k_ft_in1k",
    "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k",
    "vit_medium_patch16_rope_reg1_gap_256.sbb_in1k",
    "vit_betwixt_patch16_rope_reg4_gap_256.sbb_in1k",
    "vit_base_patch16_rope_reg1_gap_256.sbb_in1k",
    "vit_pe_core_tiny_patch16_384.fb",
    "vit_pe_core_small_patch16_384.fb",
    "vit_pe_core_base_patch16_224.fb",
    "vit_small_patch16_dinov3.lvd1689m",
    "vit_small_patch16_dinov3_qkvb.lvd1689m",
    "vit_base_patch16_dinov3.lvd1689m",
    "vit_small_patch16_224.augreg_in21k_ft_in1k",
    "vit_base_patch16_224.augreg2_in21k_ft_in1k",
    "gemma4_vit_167m_enc.gemma4_e4b_it",
    "qwen3_vit_88m_enc.qwen3_5_0_8b",
    "deepseek_vit_412m_enc.deepseek_v4_1_flash",
)
HUB_MODELS = PAPER_MODELS + FAMILY_MODELS

HUB_OFFLINE_HELP = (
    "run `python -m rope_viz download {name}` on a machine with internet access "
    "(or copy its Hugging Face cache to {cache}), then reload."
)


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """ImageNet-1k class descriptions from timm's bundled metadata (no download)."""
    return tuple(ImageNetInfo().label_descriptions(as_dict=False))


def class_names_for(module_or_cfg, num_outputs: int) -> tuple[str, ...]:
    """Class names when the outputs are ImageNet classes (timm's subset inference), else ()."""
    subset = infer_imagenet_subset(module_or_cfg)
    if subset is None or num_outputs == 0:
        return ()
    if subset == "imagenet-1k":
        return imagenet_class_names()
    return tuple(ImageNetInfo(subset).label_descriptions(as_dict=False))


def meta_module(arch: str, **kwargs) -> torch.nn.Module:
    """The architecture built on the meta device: its structure and configuration, no memory, no weights."""
    return timm.create_model(arch, pretrained=False, device="meta", **kwargs)


def compute_hub_spec(name: str) -> ModelSpec:
    """A hub model's spec from timm's pretrained_cfg and the module's own structure (built on meta)."""
    if timm.models.get_pretrained_cfg(name) is None:
        raise ModelLoadError(f"timm has no pretrained weights called {name}.")
    module = meta_module(name)
    cfg = resolve_model_data_config(module)
    names = class_names_for(module, module.num_classes)
    info = describe_module(module)
    return ModelSpec(
        name=name, source="hub", num_classes=len(names),
        class_names=names, arch=name, label=f"{info['family_label']} ViT {info['depth']}x{info['embed_dim']}",
        mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), mean_std_source="timm pretrained_cfg",
        interpolation=cfg["interpolation"], crop_pct=float(cfg["crop_pct"]), head_size=int(module.num_classes),
        **info,
    )


# Building a module on the meta device still runs timm's weight init (about 0.5 s per model), so
# specs are kept on disk, keyed on timm's version and on the code that derives them.
_SPEC_CODE = (Path(__file__).parent / "hub.py", Path(specs.__file__), *sorted(Path(adapters.__file__).parent.glob("*.py")))
_DISK_LOCK = threading.Lock()


def _spec_cache_path() -> Path:
    digest = hashlib.sha1(b"".join(p.read_bytes() for p in _SPEC_CODE)).hexdigest()[:12]
    root = Path(os.environ.get("ROPE_VIZ_CACHE", Path.home() / ".cache" / "rope_viz"))
    return root / f"hub_specs-timm{timm.__version__}-{digest}.json"


@lru_cache(maxsize=1)
def _disk_specs() -> dict:
    try:
        return json.loads(_spec_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _store(name: str, spec: ModelSpec) -> None:
    fields = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("class_names", "card")}
    with _DISK_LOCK:
        cache = _disk_specs()
        cache[name] = fields
        path = _spec_cache_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, path)  # atomic: concurrent processes never read half a file
        except OSError:
            pass  # a read-only home only costs the rebuild next time


@lru_cache(maxsize=None)
def hub_spec(name: str) -> ModelSpec:
    """A hub model's spec (compute_hub_spec), from the on-disk cache when this code and timm made it."""
    stored = _disk_specs().get(name)
    if stored is not None:
        tuples = {k: tuple(v) for k, v in stored.items() if isinstance(v, list)}
        names = class_names_for({"num_classes": stored["head_size"]}, stored["head_size"])
        return ModelSpec(**{**stored, **tuples, "class_names": names})
    spec = compute_hub_spec(name)
    _store(name, spec)
    return spec


def hub_repo_id(name: str) -> str:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise ModelLoadError(f"timm has no Hugging Face weights registered for {name}.")
    return cfg.hf_hub_id if cfg.hf_hub_id != "timm/" else f"timm/{name}"


def hub_reachable(timeout: float = 3.0) -> bool:
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
    if not hub_reachable():
        raise ModelLoadError(
            f"Weights for {name} are not downloaded and the Hugging Face hub cannot be reached: "
            + HUB_OFFLINE_HELP.format(name=name, cache=constants.HF_HUB_CACHE)
        )
    try:
        return hf_hub_download(hub_repo_id(name), "model.safetensors", etag_timeout=10)
    except Exception as err:
        raise ModelLoadError(f"Downloading weights for {name} failed ({type(err).__name__}: {err}).") from err
