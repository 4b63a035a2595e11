"""Hugging Face vision towers from a local model directory or the local Hugging Face cache.

A directory as `save_pretrained` or `snapshot_download` leave it: config.json (a full VLM's or the tower's own),
safetensors weights (one file, or shards with their index), optionally preprocessor_config.json. The adapter is
found by config.json's model_type (rope_viz.adapters.towers); only the vision tower is built, and only its
weights are read (safetensors are opened lazily, tensor by tensor): the language model is never instantiated.
Normalisation is the image processor's (its preprocessor_config.json, else the processor's defaults).

transformers and huggingface_hub are imported on first use (importlib), so importing rope-viz stays as fast.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch

from rope_viz import adapters
from rope_viz.adapters.towers import Tower, TowerAdapter
from rope_viz.models.specs import ModelLoadError, ModelSpec, describe_module

__all__ = ["tower_adapters", "adapter_for_config", "find_directory", "tower_spec", "load_tower",
           "vision_state"]


def tower_adapters() -> list[TowerAdapter]:
    return [a for a in adapters.ADAPTERS if isinstance(a, TowerAdapter)]


def adapter_for_config(config: dict, where: str) -> TowerAdapter:
    """The tower adapter for a config.json: its model_type, and its vision_config's where it has one (a LLaVA
    config may hold a Pixtral, an MLCD or a CLIP tower). One sentence naming the supported types otherwise."""
    model_type = config.get("model_type", "")
    vision = config.get("vision_config") if isinstance(config.get("vision_config"), dict) else {}
    vision_type = vision.get("model_type")
    found = [a for a in tower_adapters() if model_type in a.model_types]
    if vision_type:
        found = [a for a in found if vision_type in a.model_types] or [
            a for a in tower_adapters() if vision_type in a.model_types and model_type in a.model_types]
    if found:
        return found[0]
    supported = ", ".join(sorted({t for a in tower_adapters() for t in a.model_types}))
    what = f"{model_type} config" + (f" with a {vision_type} vision tower" if vision_type else "")
    raise ModelLoadError(f"{where} holds a {what if model_type else 'config without a model_type'}, which is not a "
                         f"supported vision tower; supported model types: {supported}.")


def find_directory(argument: str | Path) -> Path:
    """A local directory, or the snapshot of a hub id already in the local Hugging Face cache (never downloads)."""
    path = Path(argument).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} has no config.json; choose a Hugging Face model directory.")
        return path
    if path.exists():
        raise ModelLoadError(f"{path} is a file; a Hugging Face tower is a directory with config.json.")
    hub = importlib.import_module("huggingface_hub")
    try:
        return Path(hub.snapshot_download(str(argument), local_files_only=True, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as err:  # not cached, a malformed id, ...: the user needs one sentence
        raise ModelLoadError(f"{argument} is neither a directory nor a model in the local Hugging Face cache "
                             f"(download it first, e.g. `hf download {argument}`).") from err


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Could not read {what} {path.name} in {path.parent.name} ({type(err).__name__}).") from err


def _weight_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return sorted({directory / f for f in _read_json(index, "weights index")["weight_map"].values()})
    return sorted(directory.glob("*.safetensors"))


def vision_state(directory: Path, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Only the tower's tensors, their prefix stripped, read lazily from the directory's safetensors."""
    safe_open = importlib.import_module("safetensors").safe_open
    files = _weight_files(directory)
    if not files:
        raise ModelLoadError(f"{directory.name} has no .safetensors weights.")
    state = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as reader:
                for key in reader.keys():
                    prefix = next((p for p in prefixes if key.startswith(p)), None)
                    if prefix is not None:
                        state[key[len(prefix):]] = reader.get_tensor(key)
        except OSError as err:
            raise ModelLoadError(f"Could not read {file.name}: it is not a valid safetensors file.") from err
    if not state:
        raise ModelLoadError(f"{directory.name} has no vision-tower weights (none start with {' or '.join(prefixes)}).")
    return state


def _load(hf: torch.nn.Module, state: dict, where: str) -> None:
    own = hf.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = ([f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []) + \
                ([f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []) + \
                ([f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, not {tuple(own[wrong[0]].shape)}"] if wrong else [])
        raise ModelLoadError(f"The vision weights in {where} do not fit its config: {'; '.join(parts)}.")
    hf.load_state_dict(state, strict=True)


def _config(directory: Path):
    auto = importlib.import_module("transformers").AutoConfig
    try:
        return auto.from_pretrained(str(directory), local_files_only=True)
    except Exception as err:  # transformers raises many kinds for a bad config
        raise ModelLoadError(f"transformers could not read the config in {directory.name} ({type(err).__name__}).") from err


def build_tower(directory: Path, adapter: TowerAdapter | None = None) -> Tower:
    """The directory's vision tower with its weights, in eval mode, normalised as its image processor says."""
    adapter = adapter or adapter_for_config(_read_json(directory / "config.json", "config"), directory.name)
    vision_config = adapter.vision_config(_config(directory))
    hf = adapter.build(vision_config)
    state = adapter.convert_weights(vision_state(directory, adapter.weight_prefixes), vision_config)  # Kimi's layout
    _load(hf, adapter.rename_weights(hf, state), directory.name)  # transformers' own load-time renamings
    processor = directory / "preprocessor_config.json"
    mean = std = None
    if processor.is_file():
        cfg = _read_json(processor, "image processor config")
        mean, std = cfg.get("image_mean"), cfg.get("image_std")
    return adapter.wrap(hf, mean, std)


def tower_spec(argument: str | Path, name: str | None = None) -> ModelSpec:
    """A ModelSpec for a tower directory or cached hub id; the tower is built and loaded once to check it."""
    if not str(argument).strip():
        raise ModelLoadError("Enter a Hugging Face model directory or a hub id.")
    directory = find_directory(argument)
    config = _read_json(directory / "config.json", "config")
    adapter = adapter_for_config(config, directory.name)
    tower = build_tower(directory, adapter)
    has_processor = (directory / "preprocessor_config.json").is_file()
    label = Path(str(argument)).name if Path(str(argument)).expanduser().is_dir() else str(argument)
    return ModelSpec(name=name or f"local:{label}", source="local", num_classes=0, class_names=(),
                     arch=f"hf:{config['model_type']}", path=str(directory), label=f"{label} ({adapter.label})",
                     mean=tower.mean, std=tower.std, head_size=0, crop_pct=1.0, interpolation="bicubic",
                     mean_std_source="preprocessor_config.json" if has_processor else "the image processor's defaults",
                     size_step=adapter.size_multiple(tower.hf), **describe_module(tower))


def load_tower(spec: ModelSpec) -> Tower:
    """Build and load a registered tower (spec.path: its directory)."""
    return build_tower(Path(spec.path))
