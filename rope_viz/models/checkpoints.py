"""Checkpoints: read safely, bring to the module's key layout, load strictly, explain mismatches.

Files are read by timm's load_state_dict from safetensors or torch.load(weights_only=True), never a
bare unpickle. naver's rope-vit layout ({'model': state} with a flat top-level `freqs`) and timm's
own checkpoint filters are both understood. Anything that does not fit the chosen architecture
(wrong RoPE kind, wrong size, wrong keys) is one sentence naming what was expected and what was found.
"""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import torch
from timm.models import load_state_dict as timm_load_state_dict

from rope_viz import adapters
from rope_viz.models.specs import ModelLoadError


def read_state_dict(path: str | os.PathLike) -> dict:
    """Read a checkpoint without unpickling arbitrary objects, with timm's reader: safetensors, or
    torch.load(weights_only=True) (argparse.Namespace, which timm's training checkpoints keep in `args`,
    is its only allowed extra). timm also takes the state dict out of its wrapper (EMA weights first)
    and drops DDP / torch.compile key prefixes. Every failure is one sentence (ModelLoadError)."""
    path = Path(path)
    if not path.is_file():  # timm says only FileNotFoundError() (and logs an error) for anything else
        kind = "IsADirectoryError" if path.is_dir() else "FileNotFoundError"
        raise ModelLoadError(f"Could not open checkpoint {path.name} ({kind}).")
    try:
        return timm_load_state_dict(str(path), device="cpu", weights_only=True)
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
    except AttributeError as err:  # timm cleans keys with .items(): the file holds a tensor or a list, not a dict
        raise ModelLoadError("The checkpoint holds no state dict of tensors.") from err
    except Exception as err:  # corrupt files raise many types; the user needs one sentence
        if isinstance(err, pickle.UnpicklingError) or isinstance(err.__cause__, pickle.UnpicklingError):
            # weights_only refused something that is not a tensor (timm re-raises it as a RuntimeError)
            raise ModelLoadError(f"Checkpoint {path.name} holds Python objects besides tensors; it is refused because "
                                 f"unpickling them could run code (torch.load with weights_only=True).") from err
        raise ModelLoadError(
            f"Could not read checkpoint {path.name}: it is not a valid {path.suffix} weights file ({type(err).__name__})."
        ) from err


def unwrap(state: dict) -> dict:
    """Strip training wrappers ({'model': ...}, {'state_dict': ...}) down to the tensors."""
    for key in ("model_ema", "model", "module", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise ModelLoadError("The checkpoint holds no state dict of tensors.")
    return state


def _what(module: torch.nn.Module) -> str:
    """The module's position scheme in words, e.g. 'naver RoPE-Axial' (from its family)."""
    try:
        resolved = adapters.resolve(module)
        return resolved.adapter.display(resolved.body)
    except adapters.FamilyError:
        return type(module).__name__


def _naver_freqs(state: dict, module: torch.nn.Module, source: str) -> None:
    """naver's top-level `freqs` (2, L, H*D/2) -> timm's `rope.freqs` (2, L, H, D/2), checked first."""
    found = state.pop("freqs")
    target = getattr(getattr(module, "rope", None), "freqs", None)
    if target is None:
        raise ModelLoadError(
            f"Checkpoint {source} holds learned RoPE-Mixed frequencies (freqs {tuple(found.shape)}), but the chosen "
            f"architecture is {_what(module)}, which has none; choose the matching RoPE-Mixed architecture.")
    if found.numel() != target.numel():
        raise ModelLoadError(
            f"Checkpoint {source} has RoPE-Mixed frequencies of shape {tuple(found.shape)} ({found.numel()} values), "
            f"but the chosen architecture expects {tuple(target.shape)} (2 x depth x heads x head_dim/2, "
            f"{target.numel()} values); the checkpoint is for another model size.")
    state["rope.freqs"] = found.reshape(target.shape)


def convert_checkpoint(state: dict, module: torch.nn.Module, source: str = "checkpoint") -> dict:
    """Bring a checkpoint to the module's own key layout with timm's checkpoint filter, plus
    naver rope-vit's names: top-level `freqs` (2, L, H*D/2) -> `rope.freqs` (2, L, H, D/2)."""
    state = dict(unwrap(state))
    for buffer in ("freqs_t_x", "freqs_t_y", "freqs_cis"):
        state.pop(buffer, None)  # naver's derived buffers: rebuilt by timm
    if "freqs" in state and "rope.freqs" not in state:
        _naver_freqs(state, module, source)
    filter_fn = getattr(sys.modules[type(module).__module__], "checkpoint_filter_fn", None)
    if filter_fn is None:
        return state
    try:
        return filter_fn(state, module)
    except Exception as err:  # timm's converters assume their own layouts; a user file may not fit
        raise ModelLoadError(f"Checkpoint {source} could not be converted for {_what(module)} by timm "
                             f"({type(err).__name__}); it is probably for another architecture.") from err


def _kind_mismatch(missing: list[str], unexpected: list[str], module: torch.nn.Module, source: str) -> str | None:
    """A sentence when the keys say the checkpoint has another position scheme than the module."""
    if "rope.freqs" in missing:
        return (f"Checkpoint {source} has no learned RoPE-Mixed frequencies (rope.freqs), but the chosen "
                f"architecture is {_what(module)}; choose an architecture of the checkpoint's kind.")
    if "rope.freqs" in unexpected:
        return (f"Checkpoint {source} holds learned RoPE-Mixed frequencies (rope.freqs), but the chosen "
                f"architecture is {_what(module)}, which has none; choose a RoPE-Mixed architecture.")
    if "pos_embed" in missing:
        return (f"Checkpoint {source} has no absolute position table (pos_embed), but the chosen architecture "
                f"is {_what(module)}, which adds one; choose the architecture without APE.")
    if "pos_embed" in unexpected:
        return (f"Checkpoint {source} holds an absolute position table (pos_embed), but the chosen architecture "
                f"is {_what(module)}, which has none; choose the architecture with APE.")
    return None


def fit_state(module: torch.nn.Module, state: dict, source: str) -> dict:
    """The checkpoint converted to the module's layout, checked key by key and shape by shape.

    Works on a module on the meta device too (only names and shapes are read), so a file that does
    not fit is refused before a full model is built. Raises ModelLoadError with one sentence.
    """
    state = convert_checkpoint(state, module, source)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        kind = _kind_mismatch(missing, unexpected, module, source)
        if kind:
            raise ModelLoadError(kind)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise ModelLoadError(f"Checkpoint {source} does not match the architecture: keys {' and '.join(parts)}.")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"Checkpoint {source} has a non-tensor entry {key}.")
        if own[key].shape != value.shape:
            raise ModelLoadError(
                f"Checkpoint {source} does not match the architecture: {key} has shape "
                f"{tuple(value.shape)}, the model expects {tuple(own[key].shape)}."
            )
    return state


def load_state_into(module: torch.nn.Module, state: dict, source: str) -> None:
    """Load converted weights strictly; mismatches become one sentence naming what was expected and found."""
    state = fit_state(module, state, source)
    own = module.state_dict()
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
