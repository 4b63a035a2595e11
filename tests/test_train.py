"""The training recipe end to end on a tiny budget: it writes a card and weights the registry loads."""
from __future__ import annotations

import json

import torch

from rope_viz import data, models, train


def test_tiny_training_run_writes_loadable_model(tmp_path):
    config = train.TrainConfig(pos="rope_axial_ape", train_scenes=256, epochs=1, batch_size=64,
                               embed_dim=32, depth=1, num_heads=2)
    weights = train.train(config, tmp_path / "out", device="cpu", cache_dir=tmp_path / "cache", progress=False)
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["pos"] == "rope_axial_ape" and card["class_names"] == data.CLASS_NAMES
    assert card["recipe"]["train_scenes"] == 256 and len(card["training"]["history"]) == 1
    spec = models.get_spec(config.name, tmp_path / "out")
    assert spec.source == "bundled" and spec.train_res == 64 and spec.patch_size == 8
    loaded = models.load_model(spec)
    assert loaded.module(torch.zeros(2, 3, 96, 96)).shape == (2, 10)  # any multiple of the patch size
    assert (tmp_path / "cache" / "scenes_0_256_64_zoom.pt").exists()  # rendered once, reused


def test_augment_keeps_shape_and_only_translates():
    images, _ = data.render_batch(range(4), 32)
    gen = torch.Generator().manual_seed(0)
    out = train.augment(images, 0, gen)  # no shift: only brightness changes
    ratio = out.sum((1, 2, 3)) / images.float().sum((1, 2, 3))
    assert out.shape == images.shape and ((ratio > 0.8) & (ratio < 1.2)).all()
    assert train.lr_at(0, 100, 10, 1.0) == 0.1 and train.lr_at(100, 100, 10, 1.0) == 0.0
