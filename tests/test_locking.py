"""Copies of a shared model are taken under its lock: never mid-capture, never with another session's hooks."""
from __future__ import annotations

import copy
import threading

import pytest
import torch

from rope_viz import attribution, capture, models, sweep
from rope_viz.runtime import locking
from helpers import count_hooks, tiny_model


class CaptureHeldMidForward:
    """A capture of `module` in another thread, paused inside its forward (capture hooks on) until release()."""

    def __init__(self, module: torch.nn.Module):
        self.module, self.inside, self.go = module, threading.Event(), threading.Event()
        self.own_hooks = 1  # the pausing hook below

        def pause(mod, args, out):
            if threading.get_ident() == self.thread.ident:
                self.inside.set()
                assert self.go.wait(30), "never released"

        self.handle = module.blocks[1].mlp.register_forward_hook(pause)
        self.thread = threading.Thread(target=capture.capture_qk, args=(module, torch.randn(1, 3, 32, 32)))

    def __enter__(self):
        self.thread.start()
        assert self.inside.wait(30)
        assert count_hooks(self.module) > self.own_hooks  # capture's hooks are on the shared model now
        return self

    def release(self):
        self.go.set()

    def __exit__(self, *exc):
        self.go.set()
        self.thread.join()
        self.handle.remove()
        assert count_hooks(self.module) == 0


@pytest.fixture
def hooks_at_copy(monkeypatch):
    """The number of hooks on each model at the moment copy_model deep-copies it."""
    seen = []

    class Spy:
        @staticmethod
        def deepcopy(module):
            seen.append(count_hooks(module))
            return copy.deepcopy(module)

    monkeypatch.setattr(locking, "copy", Spy)
    return seen


def copy_in_thread(fn, held: CaptureHeldMidForward):
    """Run fn in a thread while the capture is paused: it must wait for the lock, then see no capture hooks."""
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("value", fn()))
    worker.start()
    worker.join(0.5)
    assert worker.is_alive(), "the copy did not wait for the capture to finish"
    held.release()
    worker.join(30)
    return out["value"]


def test_copy_model_waits_for_a_capture_and_carries_no_hooks(hooks_at_copy):
    module = tiny_model("rope_mixed")
    with CaptureHeldMidForward(module) as held:
        private = copy_in_thread(lambda: locking.copy_model(module), held)
    assert hooks_at_copy == [held.own_hooks]  # copied after the capture took its hooks off
    assert count_hooks(private) == 0  # and hooks others keep (the pause hook here) stay behind
    for a, b in zip(private.parameters(), module.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_gradcam_copy_waits_for_a_capture(monkeypatch, hooks_at_copy):
    module = tiny_model("rope_mixed_ape")
    x = torch.randn(1, 3, 32, 32)
    serial = attribution.attribute(module, x, "gradcam", target=1)
    hooks_at_copy.clear()
    hooks_seen = []
    real = attribution.LayerGradCam

    def spy(forward_func, layer):  # the private copy Grad-CAM is about to tap
        hooks_seen.append(count_hooks(forward_func))
        return real(forward_func, layer)

    monkeypatch.setattr(attribution, "LayerGradCam", spy)
    with CaptureHeldMidForward(module) as held:
        result = copy_in_thread(lambda: attribution.attribute(module, x, "gradcam", target=1), held)
    assert hooks_at_copy == [held.own_hooks] and hooks_seen == [0]
    torch.testing.assert_close(result.map, serial.map)
