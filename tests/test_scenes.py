"""Procedural scenes: determinism, resolution independence, balance, and labels checked by hand."""
from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
import torch

from rope_viz import data
from rope_viz.runtime import memory


def pixels(seed, res, mode="zoom"):
    return np.asarray(data.render_scene(seed, res, mode)[0], dtype=np.float64) / 255


def test_same_seed_same_pixels():
    a, b = data.render_scene(123, 64)[0].tobytes(), data.render_scene(123, 64)[0].tobytes()
    assert a == b
    assert data.render_scene(124, 64)[0].tobytes() != a
    # A fingerprint of fixed seeds: the same pixels on any machine (numpy PCG64 + float64 math).
    digest = hashlib.sha256(b"".join(data.render_scene(s, 64, m)[0].tobytes()
                                     for s in (0, 7, 10_000_000) for m in data.MODES)).hexdigest()
    assert digest == FINGERPRINT


FINGERPRINT = "c5599a4a0f42a6c6672716c0b78f5e8b85104234cee85b141cd1c52fb61eebff"


@pytest.mark.parametrize("seed", [3, 16, 10_000_001, 10_000_042])
def test_resolution_independence(seed):
    high = pixels(seed, 128).reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))  # 128 px box-downsampled to 64
    low = pixels(seed, 64)
    assert np.abs(high - low).mean() < 0.03
    # Canvas: the frame's pixels at 64 px are the centre of the 128 px canvas.
    canvas = pixels(seed, 128, "canvas")[32:96, 32:96]
    assert np.abs(canvas - pixels(seed, 64, "canvas")).mean() < 0.03


def test_class_balance_and_disjoint_seeds():
    labels = [data.make_scene(s).label for s in data.EVAL_SEEDS[:2000]]
    assert np.bincount(labels, minlength=10).tolist() == [200] * 10
    assert len(data.CLASS_NAMES) == 10 and len(set(data.CLASS_NAMES)) == 10
    assert data.TRAIN_SEEDS.stop <= data.EVAL_SEEDS.start


# Looked at by eye (zoom renders, re-checked after the shapes grew): the filled shape and the dot's side.
HAND_CHECKED = {0: "circle, dot left", 1: "circle, dot right", 2: "square, dot left", 3: "square, dot right",
                4: "triangle, dot left", 5: "triangle, dot right", 6: "cross, dot left", 7: "cross, dot right",
                8: "star, dot left", 9: "star, dot right", 10: "circle, dot left", 13: "square, dot right",
                18: "star, dot left"}


def test_hand_checked_labels():
    for seed, name in HAND_CHECKED.items():
        assert data.CLASS_NAMES[data.render_scene(seed, 128)[1]] == name


def test_label_geometry_on_many_scenes():
    for seed in range(0, 3000, 7):
        scene = data.make_scene(seed)
        side = "right" if scene.dot[0] > scene.center[0] else "left"
        assert data.CLASS_NAMES[scene.label] == f"{scene.shape}, dot {side}"
        gap = abs(scene.dot[0] - scene.center[0])
        assert gap >= scene.radius + data.GAP[0] - 1e-9  # the dot never touches the shape
        x0, y0, x1, y1 = scene.pair_box
        assert 0 <= x0 and 0 <= y0 and x1 <= data.BASE_RES and y1 <= data.BASE_RES
        assert x1 - x0 <= 47 and y1 - y0 <= 47  # fits the 48 px canvas


def test_canvas_keeps_object_size_and_pair_in_view():
    seed = 10_000_005
    scene = data.make_scene(seed)
    for res in (48, 64, 96, 192):
        x0, y0, px = data.scene_window(scene, res, "canvas")
        assert px == 1.0
        bx0, by0, bx1, by1 = scene.pair_box
        assert x0 <= bx0 and y0 <= by0 and bx1 <= x0 + res and by1 <= y0 + res
    assert data.scene_window(scene, 128, "zoom") == (0.0, 0.0, 0.5)
    # At 32 px a large pair does not fit: the view is centred on the pair, cut on both sides.
    wide = next(s for s in map(data.make_scene, range(10_000_000, 10_000_100)) if s.pair_box[2] - s.pair_box[0] > 32)
    x0, _, _ = data.scene_window(wide, 32, "canvas")
    assert abs(x0 + 16 - (wide.pair_box[0] + wide.pair_box[2]) / 2) < 1e-9


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown scene mode 'tiles'"):
        data.render_scene(0, 64, "tiles")
    with pytest.raises(ValueError, match="integer from 8 to 1024"):
        data.render_scene(0, 4)


def test_render_batch_shapes():
    images, labels = data.render_batch(range(20, 26), 48, "canvas")
    assert images.shape == (6, 3, 48, 48) and images.dtype.is_floating_point is False
    assert labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_scale_augmentation_range_is_log_uniform_and_seeded():
    scales = np.array([data.view_scale(s, (0.5, 2.0))[0] for s in range(2000)])
    assert scales.min() >= 0.5 and scales.max() <= 2.0
    # log-uniform: half the views zoom out, half zoom in; a quarter lie in each octave half [0.5, 0.71)
    assert abs((scales < 1.0).mean() - 0.5) < 0.04 and abs((scales < 2 ** -0.5).mean() - 0.25) < 0.04
    assert scales.max() > 1.95 and scales.min() < 0.51  # the whole range is used
    assert [data.view_scale(s, (0.5, 2.0))[0] for s in range(5)] == scales[:5].tolist()
    with pytest.raises(ValueError, match="0 < low <= high"):
        data.view_scale(0, (2.0, 0.5))


def test_scaled_views_keep_the_pair_and_the_dot_in_view():
    for seed in range(0, 600, 3):
        scene = data.make_scene(seed)
        scale, rng = data.view_scale(seed, (0.5, 2.0))
        x0, y0, side = data.scaled_window(scene, scale, rng)
        assert abs(side - data.BASE_RES / scale) < 1e-9
        bx0, by0, bx1, by1 = scene.pair_box
        (dx, dy), r = scene.dot, data.DOT_RADIUS
        assert x0 <= dx - r and dx + r <= x0 + side  # the dot, which carries the label's side, is always whole
        if bx1 - bx0 <= side - 1 and by1 - by0 <= side - 1:
            assert x0 <= bx0 and y0 <= by0 and bx1 <= x0 + side and by1 <= y0 + side
            assert data.FIELD[0] <= min(x0, y0) and max(x0, y0) + side <= data.FIELD[1]


def test_scaled_view_shows_objects_as_zoom_does_at_that_scale():
    scene = data.make_scene(10_000_003)
    # A 32 base-pixel window at 64 px is scale 2: the same pixels as the 128 px zoom render, cropped.
    crop = data.render(scene, 128, "zoom")[16:80, 32:96]
    assert np.abs(data.render(scene, 64, window=(16.0, 8.0, 32.0)) - crop).mean() < 0.03
    # Scale 0.5: a 128 base-pixel window at 64 px is the 64 px canvas-mode render of 128 px, halved.
    wide = data.render(scene, 128, "canvas").reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))
    x0, y0, _ = data.scene_window(scene, 128, "canvas")
    assert np.abs(data.render(scene, 64, window=(x0, y0, 128.0)) - wide).mean() < 0.03


def test_scaled_batches_are_deterministic_and_keep_labels(tmp_path):
    a, labels = data.render_batch(range(30, 40), 32, scale_range=(0.5, 2.0))
    b, _ = data.render_batch(range(30, 40), 32, scale_range=(0.5, 2.0))
    plain, plain_labels = data.render_batch(range(30, 40), 32)
    assert torch.equal(a, b) and labels.tolist() == plain_labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert not torch.equal(a, plain)
    cached, _ = data.scene_tensors(range(30, 40), 32, cache_dir=tmp_path, scale_range=(0.5, 2.0))
    assert torch.equal(cached, a) and (tmp_path / "scenes_30_40_32_scaled0.5-2.pt").exists()


def test_eight_threads_asking_for_one_scene_set_render_it_once(tmp_path, monkeypatch):
    memory.shared_cache().clear()
    seeds = range(data.EVAL_SEEDS.start, data.EVAL_SEEDS.start + 6)
    want = data.render_batch(seeds, 24)
    calls = []
    render = data.render_batch
    monkeypatch.setattr(data, "render_batch", lambda *a: calls.append(a) or render(*a))
    results, errors, barrier = [None] * 8, [], threading.Barrier(8)

    def work(i):
        try:
            barrier.wait()
            results[i] = data.scene_tensors(seeds, 24, cache_dir=tmp_path)
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(calls) == 1  # one render, one file write: no two writers on one temporary file
    for images, labels in results:
        assert torch.equal(images, want[0]) and torch.equal(labels, want[1])
    assert [p.name for p in tmp_path.iterdir()] == [f"scenes_{seeds.start}_{seeds.stop}_24_zoom.pt"]
