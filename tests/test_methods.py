"""Position methods applied to models through the family registry: parity with timm, with capture, threads."""
from __future__ import annotations

import copy
import threading

import pytest
import timm
import torch

from helpers import count_hooks, reference_attention, tiny_model
from rope_viz import capture, models, positions, sweep


def forward(module, x):
    """Last-layer tokens: random heads give logits near 0, features show every change."""
    with torch.no_grad():
        return module.forward_features(x)


@pytest.fixture(scope="module")
def eva02():
    """EVA-02's family (reference-grid RoPE, 'ij', SwiGLU), 2 blocks so it is quick."""
    torch.manual_seed(0)
    return timm.create_model("eva02_tiny_patch14_224", pretrained=False, dynamic_img_size=True, depth=2).eval()


@pytest.mark.parametrize("pos", ["rope_mixed", "rope_axial_ape", "ape", "eva02"])
@pytest.mark.parametrize("method", list(positions.METHODS))
def test_captured_attention_under_every_method_equals_non_fused(pos, method, request):
    module = request.getfixturevalue("eva02") if pos == "eva02" else tiny_model(pos)
    patch = module.patch_embed.patch_size[0]
    x = torch.randn(1, 3, 8 * patch, 6 * patch)  # an 8 x 6 grid (tiny models trained on 4 x 4, EVA-02 on 16 x 16)
    with positions.apply_method(module, method, (8, 6)):
        qk = capture.capture_qk(module, x)
    for layer, ref in enumerate(reference_attention(module, x, method, (8, 6))):
        torch.testing.assert_close(capture.attention_map(qk, layer), ref, atol=1e-5, rtol=0)
    assert count_hooks(module) == 0


def test_methods_change_what_they_should():
    module, x = tiny_model("rope_mixed"), torch.randn(1, 3, 64, 64)
    plain = forward(module, x)
    with positions.apply_method(module, "extrapolate", (8, 8)):
        assert torch.equal(forward(module, x), plain)  # naver positions extrapolate by themselves
    for method in ("interpolate", "ntk", "yarn", "log_n"):
        with positions.apply_method(module, method, (8, 8)):
            assert not torch.allclose(forward(module, x), plain, atol=1e-4), method
    # Interpolation through the adapter's override equals timm's own reference-grid RoPE (EVA's scheme)
    # on a private copy of an axial model.
    axial = tiny_model("rope_axial")
    private = copy.deepcopy(axial)
    private.rope.ref_feat_shape = (4, 4)  # timm rescales indices onto the 4 x 4 training grid
    with positions.apply_method(axial, "interpolate", (8, 8)):
        torch.testing.assert_close(forward(axial, x), forward(private, x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(forward(axial, x), forward(private, x), atol=1e-4)


@pytest.mark.parametrize("arch,res,method", [
    ("eva02_tiny_patch14_224", 14 * 12, "interpolate"),  # EVA-02: ref_feat_shape (16, 16)
    ("vit_small_patch16_dinov3", 16 * 10, "normalised"),  # DINOv3: patch centres in [-1, 1]
])
def test_method_equals_the_family_own_grid_rule(arch, res, method):
    """Through the registry, interpolate is EVA's own reference-grid interpolation (and normalised is
    DINOv3's own coordinates) exactly, while extrapolate departs from them."""
    torch.manual_seed(0)
    module = timm.create_model(arch, pretrained=False, dynamic_img_size=True, depth=2).eval()  # 2 blocks: fast
    x = torch.randn(1, 3, res, res)
    g = res // module.patch_embed.patch_size[0]
    plain = forward(module, x)
    with positions.apply_method(module, method, (g, g)):
        torch.testing.assert_close(forward(module, x), plain, atol=1e-5, rtol=1e-5)
    with positions.apply_method(module, "extrapolate", (g, g)):  # random weights: look at the rotated q
        moved = capture.capture_qk(module, x).q
    assert not torch.allclose(moved, capture.capture_qk(module, x).q, atol=1e-3)


def test_other_threads_are_untouched_while_a_method_is_applied():
    module, x = tiny_model("rope_axial"), torch.randn(2, 3, 64, 64)
    plain = forward(module, x)
    inside, entered, done = {}, threading.Event(), threading.Event()

    def other():
        entered.wait(10)
        inside["logits"] = forward(module, x)
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with positions.apply_method(module, "yarn", (8, 8)):
        entered.set()
        done.wait(30)
        mine = forward(module, x)
    thread.join()
    assert torch.equal(inside["logits"], plain) and not torch.allclose(mine, plain, atol=1e-4)


def test_unknown_method_names_the_choices_and_leaves_no_hook():
    module = tiny_model("rope_mixed")
    with pytest.raises(positions.PositionMethodError, match="valid: native, extrapolate, interpolate"):
        with positions.apply_method(module, "stretch", (8, 8)):
            pass
    assert count_hooks(module) == 0


def test_sweep_methods_one_row_each_on_the_same_images(tmp_path, monkeypatch):
    from conftest import write_bundled
    from rope_viz import data

    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("ROPE_VIZ_CACHE", str(tmp_path / "cache"))
    write_bundled(tmp_path / "models", "rope_mixed", name="m-mixed")
    rows = sweep.accuracy_sweep(["m-mixed"], [32, 64], limit=12, device="cpu",
                                methods=["extrapolate", "interpolate", "log_n"])
    assert [(r["method"], r["position"], r["resolution"], r["n"]) for r in rows] == [
        (m, m, r, 12) for m in ("extrapolate", "interpolate", "log_n") for r in (32, 64)]
    # Every method is the model itself on the training grid; at 64 px interpolate equals applying it by hand.
    assert len({(r["correct1"], r["correct5"]) for r in rows if r["resolution"] == 32}) == 1
    loaded = models.load_model("m-mixed")
    images, labels = data.scene_tensors(data.EVAL_SEEDS[:12], 64)
    with positions.apply_method(loaded.module, "interpolate", (8, 8), (4, 4)):
        by_hand = sweep.count_correct(loaded.module, images, labels, loaded.spec.mean, loaded.spec.std, "cpu")
    assert (rows[3]["correct1"], rows[3]["correct5"]) == by_hand[:2]
    assert sweep.rows_to_csv(rows).splitlines()[0].endswith(",seconds,method")
    with pytest.raises(positions.PositionMethodError, match="valid: native, extrapolate"):
        sweep.accuracy_sweep(["m-mixed"], [32], methods=["stretch"])


def test_cli_sweep_takes_methods(tmp_path, monkeypatch, capsys):
    from conftest import write_bundled
    from rope_viz.__main__ import main

    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("ROPE_VIZ_CACHE", str(tmp_path / "cache"))
    write_bundled(tmp_path / "models", "rope_axial", name="c-axial")
    out = tmp_path / "s.csv"
    assert main(["sweep", "--models", "c-axial", "--resolutions", "48", "--limit", "5", "--method", "ntk", "yarn",
                 "--device", "cpu", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [line.split(",")[-1] for line in lines] == ["method", "ntk", "yarn"]
    with pytest.raises(SystemExit):
        main(["sweep", "--models", "c-axial", "--resolutions", "48", "--method", "stretch"])
    assert "invalid choice: 'stretch'" in capsys.readouterr().err
