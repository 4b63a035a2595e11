"""The five bundled models in assets/models: cards agree with the registry and with a fresh evaluation."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from rope_viz import data, models, sweep
from rope_viz.training import cards, train

CARDS = sorted(models.BUNDLED_DIR.glob("*.json"))
NAMES = [c.stem for c in CARDS]
# Models that do not reach the 85% bar, with what was measured (none today). Strict xfail: once a
# retrained model passes, the test fails until its line is removed here.
BELOW_BAR: dict[str, str] = {}


@pytest.fixture(autouse=True)
def real_models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(models.BUNDLED_DIR))


def test_five_kinds_within_40_mb():
    assert sorted(json.loads(c.read_text())["pos"] for c in CARDS) == sorted(models.POS_KINDS)
    size = sum(p.stat().st_size for p in models.BUNDLED_DIR.glob("*.safetensors"))
    assert size <= 40e6, f"bundled weights are {size / 1e6:.1f} MB"
    assert [s.source for s in models.list_models()[:5]] == ["bundled"] * 5  # listed first


@pytest.mark.parametrize("name", NAMES)
def test_card_agrees_with_registry(name):
    card = json.loads((models.BUNDLED_DIR / f"{name}.json").read_text())
    spec = models.get_spec(name)
    assert spec.source == "bundled" and spec.pos == card["pos"] and spec.train_res == card["train_res"]
    assert spec.patch_size == card["architecture"]["patch_size"] and list(spec.class_names) == data.CLASS_NAMES
    assert card["command"] == f"python -m rope_viz train --pos {card['pos']} --seed {card['recipe']['seed']}"
    recipe = {k: v for k, v in asdict(train.TrainConfig(pos=card["pos"])).items() if k not in ("mean", "std", "extra")}
    assert card["recipe"] == recipe  # one shared recipe: today's defaults, only the position kind differs
    table = card["eval"]
    assert table["limit"] >= 2000 and table["top1"]["zoom"][str(card["train_res"])] >= 90.0 and set(table["top1"]) == set(cards.CARD_MODES)
    for mode in cards.CARD_MODES:
        assert [int(r) for r in table["top1"][mode]] == list(cards.CARD_RESOLUTIONS)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_eval_reproduces_the_card_at_the_training_resolution(name):
    card = json.loads((models.BUNDLED_DIR / f"{name}.json").read_text())
    row = sweep.evaluate_cell(models.load_model(name), card["train_res"], "shapes", limit=card["eval"]["limit"])
    assert abs(row["top1"] - card["eval"]["top1"]["zoom"][str(card["train_res"])]) <= 0.5, row


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason=BELOW_BAR[n], strict=True))
                                  if n in BELOW_BAR else n for n in NAMES])
def test_scores_at_least_85_on_256_held_out_scenes(name):
    card = json.loads((models.BUNDLED_DIR / f"{name}.json").read_text())
    row = sweep.evaluate_cell(models.load_model(name), card["train_res"], "shapes", limit=256)
    assert row["n"] == 256 and row["top1"] >= 85.0, row
