"""Every path that puts hooks on a model takes them all off again, for every family, also when the forward raises.

One generated test: (path, model, mode) for
- paths: capture_qk; every position method (positions.METHODS) through apply_method with a capture inside;
  adapters.override_freqs; positions.scale_logits; collapse.shifted_positions; features.compute_patch_features;
  every attribution method (attribution.METHODS) through attribution.attribute (models with a classifier head);
- models: the smallest timm model of every family (test_families.FAMILY_MODELS) and a tiny bundled-style
  model of every position kind (helpers.tiny_model);
- modes: "ok"; "raise" (the last block's attention raises once the path's own forward runs);
  "grid" (paths that override positions: a forward at a grid other than the override's, which the
  override's hook refuses).
The list is built from the registries, so a new family, method or position kind is covered without editing it.
Afterwards the model has no hook (count_hooks, every hook dict, torch's global hooks) and nothing of it
changed: state_dict tensors, module names, types, modes and plain attributes, parameters' requires_grad and grad.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import timm
import torch

from helpers import count_hooks, tiny_model
from rope_viz import adapters, models
from rope_viz.errors import FamilyError
from rope_viz.measure import attribution, capture, collapse, features, positions
from rope_viz.runtime.locking import HOOK_DICTS
from test_families import FAMILY_KWARGS, FAMILY_MODELS, family_key, family_model

GRIDS = [(2, 3), (3, 3), (2, 4), (4, 6), (6, 6)]  # the first two a model's image-size rules allow are used
ATTRIBUTION_OPTIONS = dict(steps=2, internal_batch_size=2, samples=2, batch=16)  # one short pass of each method
TINY = "tiny_"  # model keys for helpers.tiny_model(pos)


class Boom(RuntimeError):
    """What the patched attention raises in mode "raise"."""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny forwards: a second intra-op thread only waits on a busy machine (measured 20x slower on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- the models

def _timm_num_classes(key: str) -> int:
    cfg = timm.models.get_pretrained_cfg(FAMILY_MODELS[key])
    return int(FAMILY_KWARGS.get(key, {}).get("num_classes", cfg.num_classes if cfg is not None else 0))


MODEL_KEYS = list(FAMILY_MODELS) + [TINY + pos for pos in models.POS_KINDS]
HAS_ROPE = {**{k: adapters.get_adapter(family_key(k)).has_rope for k in FAMILY_MODELS},
            **{TINY + pos: pos != "ape" for pos in models.POS_KINDS}}
HAS_HEAD = {**{k: _timm_num_classes(k) > 0 for k in FAMILY_MODELS}, **{TINY + pos: True for pos in models.POS_KINDS}}
_TINY_BUILT: dict[str, torch.nn.Module] = {}


def build(key: str) -> torch.nn.Module:
    if key.startswith(TINY):
        if key not in _TINY_BUILT:
            _TINY_BUILT[key] = tiny_model(key.removeprefix(TINY))  # 4 classes, 8 px patches, trained on 4 x 4
        return _TINY_BUILT[key]
    return family_model(key)  # shared with test_families


def grids(module) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two small grids the model's own image-size rules allow: the one to run on, and another."""
    p = capture.patch_size_of(module)
    allowed = []
    for gh, gw in GRIDS:
        try:
            adapters.check_image_size(module, gh * p, gw * p)
        except FamilyError:
            continue
        allowed.append((gh, gw))
    return allowed[0], allowed[1]


# ---------------------------------------------------------------- the paths

def _forward(module, x):
    with torch.inference_mode():
        return module(x)


def _attribute(method):
    def run(module, x, grid):
        attribution.attribute(module, x, method, **ATTRIBUTION_OPTIONS)
    return run


def _method(method):
    def run(module, x, grid):
        with positions.apply_method(module, method, grid):
            capture.capture_qk(module, x)
    return run


def _override(module, x, grid):
    with adapters.override_freqs(module, adapters.model_freqs(module, grid) * 0.5, grid):
        _forward(module, x)


def _scale_logits(module, x, grid):
    with positions.scale_logits(module, 0.5):
        _forward(module, x)


def _shifted(module, x, grid):
    with collapse.shifted_positions(module, (0.5, 1.0), grid):
        _forward(module, x)


@dataclass(frozen=True)
class Path:
    name: str
    run: Callable  # (module, x (1, 3, H, W) at some grid, grid the path is set up for) -> None
    hooks: bool  # whether it hooks the model itself during its forward (not a private copy)
    rope_only: bool = False
    head_only: bool = False
    skip_calls: int = 0  # forwards of the model before the path's own one (attribute picks its target first)
    moves_positions: bool = False  # always overrides the rotation: a forward at another grid raises


PATHS = [
    Path("capture_qk", lambda m, x, g: capture.capture_qk(m, x), hooks=True),
    *[Path(f"apply_method:{name}", _method(name), hooks=True) for name in positions.METHODS],
    Path("override_freqs", _override, hooks=True, rope_only=True, moves_positions=True),
    Path("scale_logits", _scale_logits, hooks=True),
    Path("shifted_positions", _shifted, hooks=True, rope_only=True, moves_positions=True),
    Path("patch_features", lambda m, x, g: features.compute_patch_features(m, x), hooks=False),
    *[Path(f"attribute:{name}", _attribute(name), hooks=name == "rollout", head_only=True, skip_calls=1)
      for name in attribution.METHODS],
]

# Known bugs, as strict xfails (they turn into failures once fixed; then delete the entry): (model, path prefix, modes).
# Gemma 4's classifier wrapper (timm gemma4_vit_*) keeps pretrained_cfg and num_prefix_tokens on itself, not on its
# .encoder: Adapter.train_grid reads body.pretrained_cfg, so no position method can start on it, and
# features.compute_patch_features reads module.num_prefix_tokens from the wrapper after the forward.
KNOWN: list = []  # (model key, path prefix, modes, why): strict xfails for bugs found and not yet fixed


def cases():
    for path in PATHS:
        for key in MODEL_KEYS:
            if (path.rope_only and not HAS_ROPE[key]) or (path.head_only and not HAS_HEAD[key]):
                continue
            for mode in ("ok", "raise") + (("grid",) if path.moves_positions else ()):
                marks = [pytest.mark.xfail(raises=AttributeError, strict=True, reason=why)
                         for k, prefix, modes, why in KNOWN if k == key and path.name.startswith(prefix) and mode in modes]
                yield pytest.param(path, key, mode, id=f"{path.name}-{key}-{mode}", marks=marks)


# ---------------------------------------------------------------- what must not change

def _plain(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str)) or (
        isinstance(value, tuple) and all(_plain(v) for v in value))


def snapshot(module: torch.nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "modules": [(name, type(m), m.training, {k: v for k, v in vars(m).items() if _plain(v)})
                    for name, m in module.named_modules()],
        "params": [(name, p.requires_grad, p.grad is None) for name, p in module.named_parameters()],
        "hooks": sum(len(getattr(m, d, {})) for m in module.modules() for d in HOOK_DICTS),
        "global_hooks": [len(getattr(torch.nn.modules.module, d)) for d in dir(torch.nn.modules.module)
                         if d.startswith("_global_") and d.endswith("hooks")],
    }


def assert_unchanged(before: dict, after: dict) -> None:
    assert list(after["state"]) == list(before["state"])
    changed = [k for k, v in before["state"].items() if not torch.equal(v, after["state"][k])]
    assert not changed, f"state_dict tensors changed: {changed}"
    assert after["modules"] == before["modules"]
    assert after["params"] == before["params"]
    assert after["hooks"] == 0 and after["global_hooks"] == before["global_hooks"]


@pytest.mark.parametrize("path, key, mode", list(cases()))
def test_every_hook_comes_off(path, key, mode):
    module = build(key)
    grid, other = grids(module)
    p = capture.patch_size_of(module)
    run_grid = other if mode == "grid" else grid
    x = torch.randn(1, 3, run_grid[0] * p, run_grid[1] * p, generator=torch.Generator().manual_seed(0))
    assert count_hooks(module) == 0
    before = snapshot(module)
    # The last block's attention notes the hooks on the model at each call; in mode "raise" it raises
    # (after `skip_calls` calls), with the path's hooks on.
    attn = adapters.body_of(module).blocks[-1].attn
    own_forward, seen = attn.forward, []

    def spy(*args, **kwargs):
        seen.append(count_hooks(module))
        if mode == "raise" and len(seen) > path.skip_calls:
            raise Boom("the forward failed")
        return own_forward(*args, **kwargs)

    attn.forward = spy
    try:
        if mode == "ok":
            path.run(module, x, grid)
        elif mode == "raise":
            with pytest.raises(Boom):
                path.run(module, x, grid)
        else:
            with pytest.raises(FamilyError, match=f"set for a {grid[0]} x {grid[1]} grid"):
                path.run(module, x, grid)
    finally:
        del attn.forward
    assert count_hooks(module) == 0
    assert_unchanged(before, snapshot(module))
    if mode != "grid":  # the override's grid check refuses the forward before any attention runs
        assert seen, "the path never reached the model's attention"
        if path.hooks:
            assert max(seen) > 0, "the path placed no hook, so this case tests nothing"


def test_every_adapter_has_a_family_model():
    """The generated cases reach a family only through FAMILY_MODELS: every adapter needs an entry there."""
    covered = {family_key(k) for k in FAMILY_MODELS}
    missing = [a.key for a in adapters.ADAPTERS if a.key not in covered and a.library == "timm"]  # towers: test_towers
    assert not missing, f"adapters without a model in tests/test_families.FAMILY_MODELS: {missing}"
    assert covered <= {a.key for a in adapters.ADAPTERS}
