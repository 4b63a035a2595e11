"""Resolution sweeps: exact counts against a plain timm loop, folders, position handling, bad input."""
from __future__ import annotations

import torch
from PIL import Image
import pytest

from conftest import write_bundled
from rope_viz import data, models, positions, rope, sweep


@pytest.fixture
def scene_models(tmp_path, monkeypatch):
    """Tiny bundled models over the scenes' 10 classes; scene tensors cached in tmp."""
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("ROPE_VIZ_CACHE", str(tmp_path / "cache"))
    for i, pos in enumerate(("ape", "rope_mixed")):
        write_bundled(tmp_path / "models", pos, name=f"s-{pos}", seed=i)
    return ["s-ape", "s-rope_mixed"]


def plain_loop_counts(name: str, images: list[Image.Image], labels: list[int], resolution: int):
    """What a user would write: timm model, preprocess, argmax / top-5, count."""
    loaded = models.load_model(name)
    hits1 = hits5 = 0
    with torch.no_grad():
        for image, label in zip(images, labels):
            logits = loaded.module(loaded.preprocess(image, resolution))
            top5 = logits.topk(5, dim=-1).indices[0].tolist()
            hits1 += top5[0] == label
            hits5 += label in top5
    return hits1, hits5


def test_scene_sweep_equals_a_plain_timm_loop(scene_models):
    rows = sweep.accuracy_sweep(scene_models, [32, 48], dataset="shapes:canvas", limit=40, device="cpu")
    assert [(r["model"], r["resolution"], r["mode"], r["n"]) for r in rows] == [
        (m, r, "canvas", 40) for m in scene_models for r in (32, 48)]
    for row in rows:
        scenes = [data.render_scene(s, row["resolution"], "canvas") for s in data.EVAL_SEEDS[:40]]
        hits1, hits5 = plain_loop_counts(row["model"], [im for im, _ in scenes], [lb for _, lb in scenes],
                                         row["resolution"])
        assert (row["correct1"], row["correct5"]) == (hits1, hits5)
        assert row["top1"] == round(100 * hits1 / 40, 2) and row["top5"] == round(100 * hits5 / 40, 2)


def test_image_folder_sweep_equals_a_plain_loop_and_skips_unknown_folders(scene_models, tmp_path):
    root = tmp_path / "folder"
    images, labels = [], []
    for seed in range(10_000_000, 10_000_012):
        image, label = data.render_scene(seed, 80)
        folder = root / data.CLASS_NAMES[label].replace(", ", "_").replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{seed}.png")
    (root / "not-a-class").mkdir()
    Image.new("RGB", (10, 10)).save(root / "not-a-class" / "x.png")
    for folder in sorted(p for p in root.iterdir() if p.name != "not-a-class"):
        label = [c.replace(", ", "_").replace(" ", "_") for c in data.CLASS_NAMES].index(folder.name)
        for file in sorted(folder.iterdir()):
            images.append(Image.open(file).convert("RGB"))
            labels.append(label)
    rows = sweep.accuracy_sweep(["s-rope_mixed"], [40], dataset=str(root), limit=100, device="cpu")
    assert rows[0]["n"] == 12 and rows[0]["mode"] == "folder"
    assert (rows[0]["correct1"], rows[0]["correct5"]) == plain_loop_counts("s-rope_mixed", images, labels, 40)


def test_bad_folders_and_sizes_get_one_sentence(scene_models, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(sweep.SweepError, match="no class folders"):
        sweep.accuracy_sweep(["s-ape"], [32], dataset=str(tmp_path / "empty"))
    (tmp_path / "other" / "n01440764").mkdir(parents=True)
    with pytest.raises(sweep.SweepError, match="matches a class of s-ape"):
        sweep.accuracy_sweep(["s-ape"], [32], dataset=str(tmp_path / "other"))
    with pytest.raises(sweep.SweepError, match="neither 'shapes'"):
        sweep.parse_dataset(str(tmp_path / "missing"))
    module = models.load_model("s-ape").module
    with pytest.raises(sweep.SweepError, match="GiB is free"):
        sweep.check_memory(module, 10**5, 4096, 8, "cpu")
    rows = sweep.accuracy_sweep(["s-ape"], [30], limit=10, device="cpu")  # 30 px: not a multiple of 8
    assert rows[0]["resolution"] == 32 and rows[0]["requested"] == 30


def test_cancel_keeps_finished_cells_and_cache_is_reused(scene_models):
    cache, calls = {}, []
    rows = sweep.accuracy_sweep(scene_models, [32, 40, 48], limit=10, device="cpu", cache=cache,
                                should_stop=lambda: len(calls) >= 2, progress=lambda d, t, r: calls.append(d))
    assert len(rows) == 2 and len(cache) == 2
    loads = []
    again = sweep.accuracy_sweep(scene_models[:1], [32, 40], limit=10, device="cpu", cache=cache,
                                 load=lambda *a, **k: loads.append(a) or models.load_model(*a, **k))
    assert loads == [] and [r["top1"] for r in again] == [r["top1"] for r in rows]


def test_interpolate_puts_patches_at_training_positions(scene_models):
    loaded = models.load_model("s-rope_mixed")
    train = rope.model_freqs(loaded.module, (4, 4))  # (L, H, D/2, 2)
    moved = positions.method_for_model(loaded.module, "interpolate", (8, 8), (4, 4)).freqs
    angles8 = rope.angles(moved, rope.model_positions(loaded.module, (8, 8)))  # (L, H, 64, D/2)
    angles4 = rope.angles(train, rope.model_positions(loaded.module, (4, 4)))  # (L, H, 16, D/2)
    # Patch (x=4, y=2) of the 8 x 8 grid turns as position (2, 1) of the 4 x 4 training grid.
    torch.testing.assert_close(angles8[:, :, 2 * 8 + 4], angles4[:, :, 1 * 4 + 2])
    assert positions.method_for_model(loaded.module, "native", (8, 8)) is None  # the model's own forward
    with pytest.raises(sweep.SweepError, match="valid: native, extrapolate, interpolate"):
        sweep.evaluate_cell(loaded, 32, position="stretch")


def test_csv_has_the_documented_columns(scene_models):
    rows = sweep.accuracy_sweep(["s-ape"], [32], limit=10, device="cpu")
    header, line = sweep.rows_to_csv(rows).splitlines()
    assert header.split(",")[:9] == ["model", "resolution", "requested", "mode", "position", "ape_resample", "top1",
                                     "top5", "n"]
    assert line.startswith("s-ape,32,32,zoom,native,timm,")  # the default method; a bundled card measured the timm way
