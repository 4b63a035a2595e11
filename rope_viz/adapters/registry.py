"""The adapters, in the order they are tried, and finding a module's adapter once.

Hugging Face towers come first (they match only a Tower of their own adapter). Among timm families order
matters where matchers overlap: PE and EVA-02 before SBB (all three use a reference grid; SBB is the rest),
and APE-only last. Adding a family: one file with an `ADAPTER`, one line here, one entry in the parity test
table (tests/test_families.py; a tower: a TowerCase in tests/tower_cases_*.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rope_viz.adapters import (ape_only, deepseek, dinov3, eva02, gemma4, naver_axial, naver_mixed, pe, qwen3,
                               sbb)
from rope_viz.adapters.base import Adapter, rope_module
from rope_viz.adapters.towers import (dinov3_hf, gemma4_vision, glm4v, internvl, kimi_k25, llama4, mlcd, pixtral,
                                      qwen2_5_vl, qwen2_vl, qwen3_vl, sam3)
from rope_viz.errors import FamilyError

ADAPTERS: tuple[Adapter, ...] = (
    # Hugging Face transformers vision towers: they match only a Tower (rope_viz.adapters.towers)
    qwen2_vl.ADAPTER,
    qwen2_5_vl.ADAPTER,
    qwen3_vl.ADAPTER,
    pixtral.ADAPTER,
    glm4v.ADAPTER,
    kimi_k25.ADAPTER,
    dinov3_hf.ADAPTER,
    gemma4_vision.ADAPTER,
    sam3.ADAPTER,
    mlcd.ADAPTER,
    llama4.ADAPTER,
    internvl.ADAPTER,
    # timm families
    naver_mixed.ADAPTER,
    dinov3.ADAPTER,
    pe.ADAPTER,
    eva02.ADAPTER,
    sbb.ADAPTER,
    qwen3.ADAPTER,
    deepseek.ADAPTER,
    naver_axial.ADAPTER,
    gemma4.ADAPTER,
    ape_only.ADAPTER,
)
_BY_KEY = {a.key: a for a in ADAPTERS}


@dataclass(frozen=True)
class Resolved:
    """A module's adapter and its body: the module whose `.blocks` run (a classifier wrapper's
    `.encoder`, else the module itself)."""

    adapter: Adapter
    body: torch.nn.Module
    module: torch.nn.Module  # the model itself (the body, or the classifier wrapper around it)

    def train_grid(self) -> tuple[int, int]:
        return self.adapter.train_grid(self.body, self.module)


def get_adapter(key: str) -> Adapter:
    """The adapter called `key`; FamilyError naming the valid keys otherwise."""
    if key not in _BY_KEY:
        raise FamilyError(f"Unknown model family {key!r}; valid: {', '.join(_BY_KEY)}.")
    return _BY_KEY[key]


def module_of(loaded_or_module) -> torch.nn.Module:
    """The module itself: a LoadedModel's (or any wrapper's) `.module`, else the argument as it is.

    Duck-typed, so this layer needs nothing from rope_viz.models (the layer above, where LoadedModel lives).
    Not rope_viz.models.checkpoints.unwrap, which strips wrappers off a checkpoint's state dict.
    """
    return getattr(loaded_or_module, "module", loaded_or_module)


def _match(body) -> Adapter | None:
    if not hasattr(body, "blocks"):
        return None
    return next((a for a in ADAPTERS if a.matches(body)), None)


def resolve(module: torch.nn.Module) -> Resolved:
    """The module's adapter and body, from its modules. Classifier wrappers whose blocks sit under
    `.encoder` (Gemma 4, Qwen3, DeepSeek) resolve to their encoder's adapter. Raises FamilyError
    naming the supported kinds."""
    module = module_of(module)
    adapter = _match(module)
    if adapter is not None:
        return Resolved(adapter, module, module)
    inner = getattr(module, "encoder", None)
    if isinstance(inner, torch.nn.Module):
        adapter = _match(inner)
        if adapter is not None:
            return Resolved(adapter, inner, module)
    rope = rope_module(module)
    found = type(rope).__name__ if rope is not None else type(module).__name__
    raise FamilyError(f"{found} is not a supported position scheme; supported: "
                      + ", ".join(a.label for a in ADAPTERS if a.library == "timm")
                      + " (timm Eva, VisionTransformer and encoder models), and the Hugging Face vision towers of "
                      + ", ".join(a.label for a in ADAPTERS if a.library == "transformers")
                      + " (loaded from their directory: models.register_local).")


def adapter_of(module: torch.nn.Module) -> Adapter:
    """The module's adapter (see resolve)."""
    return resolve(module).adapter


def body_of(module: torch.nn.Module) -> torch.nn.Module:
    """The module whose `.blocks` run (see resolve)."""
    return resolve(module).body
