"""One lock per shared model, and the only way to copy one.

A model cached by the server is shared by every browser session. Capture puts hooks on it for
the length of one forward, holding the model's lock; a copy taken at that moment would carry the
other session's hooks. So every copy is taken under the same lock (a leaf module: anyone may use it).
"""
from __future__ import annotations

import copy
import threading
import weakref

import torch

_LOCKS: "weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(module: torch.nn.Module) -> threading.RLock:
    """The lock of one model instance (re-entrant, so a holder may also copy it)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(module)
        if lock is None:
            lock = _LOCKS[module] = threading.RLock()
        return lock


HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
              "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")


def copy_model(module: torch.nn.Module) -> torch.nn.Module:
    """A private deep copy of a (possibly shared) model, taken while no capture hooks are on it.

    Hooks that others keep on the model for longer than a capture (adapters.override_freqs lasts a
    whole `with` block and does not hold the lock) are dropped from the copy: they belong to the
    thread that placed them, not to the copy's owner.
    """
    with model_lock(module):
        private = copy.deepcopy(module)
    for sub in private.modules():
        for name in HOOK_DICTS:
            getattr(sub, name, {}).clear()
    return private


class _KeyLock:
    """A lock that lives as long as someone holds or waits for it (weakly referenced by the registry)."""

    def __init__(self):
        self.lock = threading.Lock()

    def __enter__(self):
        self.lock.acquire()
        return self

    def __exit__(self, *exc):
        self.lock.release()


_KEYS: "weakref.WeakValueDictionary[object, _KeyLock]" = weakref.WeakValueDictionary()


def key_lock(key) -> _KeyLock:
    """One lock per hashable key (e.g. a sweep cell), so that sessions asking for the same work do it once."""
    with _LOCKS_GUARD:
        lock = _KEYS.get(key)
        if lock is None:
            lock = _KEYS[key] = _KeyLock()
        return lock
