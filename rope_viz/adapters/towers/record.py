"""Recording the q and k a transformers tower multiplies, at the attention function it dispatches to.

Every transformers attention calls `ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager)`
with post-RoPE query and key (B, H, n, D); packed towers (Qwen, GLM, Kimi) call it once per image or window.
During a recording the tower's config names "rope_viz_record", a function registered once that keeps
(query, key, mask, scaling) for the recording thread and then runs the tower's own implementation, so
outputs are unchanged and other threads' forwards through the same model are only passed through.
The config is restored in `finally` (the caller holds the model's lock).
"""
from __future__ import annotations

import importlib
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from rope_viz.errors import RopeVizError

NAME = "rope_viz_record"
_active = threading.local()  # .recording: the calling thread's Recording, if any
_registered = []


@dataclass
class Call:
    """One call of the attention function. Shapes: q (B, H, n, D), k (B, Hk, n, D); mask as given or None"""

    q: torch.Tensor
    k: torch.Tensor
    mask: torch.Tensor | None
    scaling: float


@dataclass
class Recording:
    """Calls per attention module (index in the adapter's attentions()), in call order."""

    index_of: dict[int, int]  # id(attention module) -> layer
    calls: dict[int, list[Call]] = field(default_factory=dict)


def _own_function(module, implementation: str):
    """The implementation the tower would have run: a registered one, else its modeling file's eager (Llama 4's
    vision attention defaults to its own vision_eager_attention_forward; the text one needs `scaling`)."""
    if implementation == "eager":
        modeling = sys.modules[type(module).__module__]
        return getattr(modeling, "vision_eager_attention_forward", None) or modeling.eager_attention_forward
    interface = importlib.import_module("transformers.modeling_utils").ALL_ATTENTION_FUNCTIONS
    return interface[implementation]


def _record(module, query, key, value, attention_mask, scaling=None, **kwargs):
    recording = getattr(_active, "recording", None)
    layer = None if recording is None else recording.index_of.get(id(module))
    if layer is not None:  # other threads' forwards, and other modules, are only passed through
        scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
        mask = None if attention_mask is None else attention_mask.detach()
        recording.calls.setdefault(layer, []).append(Call(query.detach().float(), key.detach().float(), mask, scale))
    own = getattr(module.config, "_rope_viz_own_attention", "sdpa")  # set by `recording`
    return _own_function(module, own)(module, query, key, value, attention_mask, scaling=scaling, **kwargs)


def _register() -> None:
    if not _registered:
        interface = importlib.import_module("transformers.modeling_utils").AttentionInterface
        interface.register(NAME, _record)
        _registered.append(True)


@contextmanager
def recording(attentions: list[torch.nn.Module]):
    """Within the context, the calling thread's forwards record every call of these attention modules.

    Yields a Recording. The modules' configs name the recorder until the context ends."""
    _register()
    configs = {id(a.config): a.config for a in attentions}
    rec = Recording(index_of={id(a): i for i, a in enumerate(attentions)})
    if getattr(_active, "recording", None) is not None:
        raise RopeVizError("A capture is already running in this thread.")
    try:
        for config in configs.values():
            if config._attn_implementation != NAME:
                config._rope_viz_own_attention = config._attn_implementation
            config._attn_implementation_internal = NAME  # not the setter: it would rewrite sub-configs too
        _active.recording = rec
        yield rec
    finally:
        _active.recording = None
        for config in configs.values():
            config._attn_implementation_internal = getattr(config, "_rope_viz_own_attention", "sdpa")
