"""The training recipe end to end on a tiny budget: it writes a card and weights the registry loads."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rope_viz import data, models
from rope_viz.training import train


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
    assert (tmp_path / "cache" / "scenes_0_256_64_scaled1-2.pt").exists()  # rendered once (the scale range in the name)


def test_augment_keeps_shape_and_only_translates():
    images, _ = data.render_batch(range(4), 32)
    gen = torch.Generator().manual_seed(0)
    out = train.augment(images, 0, gen)  # no shift: only brightness changes
    ratio = out.sum((1, 2, 3)) / images.float().sum((1, 2, 3))
    assert out.shape == images.shape and ((ratio > 0.8) & (ratio < 1.2)).all()
    assert train.lr_at(0, 100, 10, 1.0) == 0.1 and train.lr_at(100, 100, 10, 1.0) == 0.0


def test_sincos_table_layout_and_relative_dot_products():
    table = train.sincos_position_table(8, 16)  # 4 frequencies per quarter
    omega = 10_000.0 ** (-torch.arange(4, dtype=torch.float64) / 4)
    y, x = 2, 5
    row = table[y * 8 + x].double()
    assert table.shape == (64, 16)
    assert torch.allclose(row, torch.cat([(x * omega).sin(), (x * omega).cos(), (y * omega).sin(), (y * omega).cos()]).float().double(), atol=1e-6)
    # sin a sin b + cos a cos b = cos(a - b): token similarity depends only on the position difference
    same_shift = [table[0] @ table[1 * 8 + 3], table[4 * 8 + 2] @ table[5 * 8 + 5]]  # both (dy, dx) = (1, 3)
    assert abs(float(same_shift[0] - same_shift[1])) < 1e-5
    with pytest.raises(ValueError, match="divisible by 4"):
        train.sincos_position_table(8, 18)


def test_build_model_initialises_only_ape_tables():
    sincos = train.build_model(train.TrainConfig(pos="ape", embed_dim=32, depth=1, num_heads=2, ape_init="sincos"))
    assert torch.equal(sincos.pos_embed[0], train.sincos_position_table(8, 32))
    random = train.build_model(train.TrainConfig(pos="ape", embed_dim=32, depth=1, num_heads=2))
    assert float(random.pos_embed.std()) < 0.05  # timm's truncated normal, std 0.02
    assert train.build_model(train.TrainConfig(pos="rope_mixed", embed_dim=32, depth=1, num_heads=2)).pos_embed is None
    again = train.build_model(train.TrainConfig(pos="ape", embed_dim=32, depth=1, num_heads=2, ape_init="sincos"))
    assert all(torch.equal(a, b) for a, b in zip(sincos.state_dict().values(), again.state_dict().values()))  # seeded


def test_scale_augmentation_is_an_option_of_the_recipe():
    assert train.TrainConfig(pos="ape", min_scale=1.0, max_scale=1.0).scale_range is None  # off: one object scale
    assert train.TrainConfig(pos="ape", min_scale=0.5, max_scale=2.0).scale_range == (0.5, 2.0)


def test_recipe_scales_cover_zoom_evaluation_up_to_2x():
    """The shared recipe's views show objects from their frame size (zoom at 64 px) to twice it (zoom at
    128 px), log-uniformly, for every kind alike; the training set's own seeds are checked."""
    config = train.TrainConfig(pos="rope_axial")
    assert config.scale_range == (1.0, 2.0) == train.TrainConfig(pos="ape").scale_range
    assert config.max_scale == 128 / config.resolution  # zoom evaluation's 2x is the largest trained size
    scales = np.array([data.view_scale(seed, config.scale_range)[0] for seed in range(3000)])
    assert 1.0 <= scales.min() < 1.01 and 1.99 < scales.max() <= 2.0
    assert abs(np.median(scales) - 2 ** 0.5) < 0.03  # log-uniform: the geometric middle
