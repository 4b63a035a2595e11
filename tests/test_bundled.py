"""The five bundled models in assets/models: cards agree with the registry, and each one works."""
from __future__ import annotations

import json

import pytest

from rope_viz import cards, data, models, sweep

CARDS = sorted(models.BUNDLED_DIR.glob("*.json"))


@pytest.fixture(autouse=True)
def real_models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(models.BUNDLED_DIR))
    monkeypatch.setenv("ROPE_VIZ_CACHE", str(tmp_path / "cache"))


def test_five_kinds_within_40_mb():
    assert sorted(json.loads(c.read_text())["pos"] for c in CARDS) == sorted(models.POS_KINDS)
    size = sum(p.stat().st_size for p in models.BUNDLED_DIR.glob("*.safetensors"))
    assert size <= 40e6, f"bundled weights are {size / 1e6:.1f} MB"


@pytest.mark.parametrize("card_path", CARDS, ids=[c.stem for c in CARDS])
def test_card_agrees_with_registry(card_path):
    card = json.loads(card_path.read_text())
    spec = models.get_spec(card["name"])
    assert spec.source == "bundled" and spec.pos == card["pos"] and spec.train_res == card["train_res"]
    assert spec.patch_size == card["architecture"]["patch_size"] and list(spec.class_names) == data.CLASS_NAMES
    assert card["recipe"]["seed"] == 0 and card["command"] == f"python -m rope_viz train --pos {card['pos']} --seed 0"
    table = card["eval"]
    assert table["limit"] >= 2000 and set(table["top1"]) == set(cards.CARD_MODES)
    for mode in cards.CARD_MODES:
        assert [int(r) for r in table["top1"][mode]] == list(cards.CARD_RESOLUTIONS)
    assert table["top1"]["zoom"][str(card["train_res"])] >= 90.0  # the bar, as measured on 2000 scenes
    assert models.list_models()[:5] == models.list_bundled()  # bundled first


@pytest.mark.parametrize("card_path", CARDS, ids=[c.stem for c in CARDS])
def test_each_model_scores_85_on_256_held_out_scenes(card_path):
    card = json.loads(card_path.read_text())
    loaded = models.load_model(card["name"])
    row = sweep.evaluate_cell(loaded, card["train_res"], "shapes", limit=256)
    assert row["n"] == 256 and row["top1"] >= 85.0, row
