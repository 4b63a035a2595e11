"""Registry and loading: bundled, hub (offline and from a locally written cache), local files."""
from __future__ import annotations

import time

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import write_bundled
from rope_viz import families, models
from rope_viz.models import hub as hub_module


@pytest.fixture
def models_dir(bundled_dir, monkeypatch):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(bundled_dir))
    return bundled_dir


def test_bundled_listed_first_and_round_trip(models_dir):
    specs = models.list_models()
    bundled = [s for s in specs if s.source == "bundled"]
    assert [s.source for s in specs[: len(bundled)]] == ["bundled"] * 5
    assert {s.pos for s in bundled} == set(models.POS_KINDS)
    x = torch.randn(2, 3, 48, 40)  # not the training size, not square: dynamic size
    for spec in bundled:
        torch.manual_seed(0)
        reference = models.build_eva(spec.card["architecture"]).eval()
        reference.load_state_dict(load_file(spec.path))
        loaded = models.load_model(spec.name)
        assert not loaded.module.training and loaded.spec == spec
        assert torch.equal(loaded.module(x), reference(x))


def test_bundled_fp16_checkpoint_loads_as_fp32(tmp_path):
    module = write_bundled(tmp_path, "rope_mixed", name="half")
    half = {k: v.half() for k, v in module.state_dict().items()}
    save_file(half, str(tmp_path / "half.safetensors"))
    loaded = models.load_model(models.get_spec("half", tmp_path))
    assert loaded.module.rope.freqs.dtype == torch.float32
    assert torch.allclose(loaded.module.rope.freqs, module.rope.freqs, atol=1e-3)


def test_bad_card_is_skipped(tmp_path):
    write_bundled(tmp_path, "ape", name="good")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "orphan.json").write_text('{"name": "orphan"}')
    assert [s.name for s in models.list_bundled(tmp_path)] == ["good"]


def test_unknown_name_lists_choices(models_dir):
    with pytest.raises(models.ModelLoadError, match="Unknown model 'nope'; valid names: tiny-"):
        models.load_model("nope")


def naver_layout(state: dict, depth: int, heads: int) -> dict:
    """What naver's rope-vit training script saves: {'model': state} with a flat top-level `freqs`."""
    state = dict(state)
    freqs = state.pop("rope.freqs")  # timm (2, L, H, D/2) -> naver (2, L, H*D/2)
    state["freqs"] = freqs.reshape(2, depth, -1)
    state["freqs_t_x"] = torch.arange(4.0)
    return {"model": state, "epoch": 3}


def test_local_naver_layout_pth(tmp_path):
    torch.manual_seed(1)
    arch = "vit_small_patch16_rope_mixed_224"
    reference = timm.create_model(arch, pretrained=False, num_classes=7, dynamic_img_size=True).eval()
    path = tmp_path / "naver_checkpoint.pth"
    torch.save(naver_layout(reference.state_dict(), 12, 6), path)
    spec = models.register_local(path, arch)
    assert spec.source == "local" and spec.pos == "rope_mixed" and spec.num_classes == 7
    assert spec in models.list_models()
    loaded = models.load_model(spec.name)
    x = torch.randn(1, 3, 64, 96)
    assert torch.equal(loaded.module(x), reference(x))


def test_local_safetensors(tmp_path):
    """A local checkpoint that fits loads; the ones that do not are in tests/test_bad_input.py."""
    arch = "vit_small_patch16_rope_224"
    state = timm.create_model(arch, pretrained=False, num_classes=3).state_dict()
    good = tmp_path / "good.safetensors"
    save_file(state, str(good))
    assert models.load_model(models.register_local(good, arch)).spec.num_classes == 3


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_hub_offline_fails_fast_with_instructions(empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # take the real reachability check, not the shortcut
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # a closed local port: refused at once
    start = time.monotonic()
    with pytest.raises(models.ModelLoadError) as err:
        models.load_model("vit_small_patch16_rope_mixed_224.naver_in1k")
    assert time.monotonic() - start < 10
    assert "python -m rope_viz download vit_small_patch16_rope_mixed_224.naver_in1k" in str(err.value)
    spec = models.get_spec("vit_small_patch16_rope_mixed_224.naver_in1k")
    assert spec not in models.available_models()


def test_hub_loads_from_a_locally_written_cache(empty_hf_cache):
    name = "deit3_small_patch16_224.fb_in1k"
    torch.manual_seed(2)
    reference = timm.create_model("deit3_small_patch16_224", pretrained=False).eval()
    snapshot = empty_hf_cache / "models--timm--deit3_small_patch16_224.fb_in1k" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    save_file(reference.state_dict(), str(snapshot / "model.safetensors"))
    spec = models.get_spec(name)
    assert spec.pos == "ape" and spec.num_classes == 1000 and len(spec.class_names) == 1000
    assert spec in models.available_models()
    loaded = models.load_model(name)
    x = torch.randn(1, 3, 224, 224)
    assert torch.equal(loaded.module(x), reference(x))
    assert loaded.module(torch.randn(1, 3, 320, 320)).shape == (1, 1000)  # dynamic size


def test_hub_registry_names_and_kinds():
    hub = [s for s in models.list_models() if s.source == "hub"]
    assert [s.name for s in hub[:15]] == list(hub_module.PAPER_MODELS)  # the paper's 15 stay, first
    assert {s.family for s in hub} == {f.key for f in families.FAMILIES if f.library == "timm"}  # every timm family
    kinds = {s.name: s.pos for s in hub}
    assert kinds["vit_base_patch16_rope_224.naver_in1k"] == "rope_axial"
    assert kinds["vit_large_patch16_rope_mixed_ape_224.naver_in1k"] == "rope_mixed_ape"
    assert kinds["vit_small_patch16_rope_ape_224.naver_in1k"] == "rope_axial_ape"
    assert kinds["deit3_base_patch16_224.fb_in1k"] == "ape"
    for name in kinds:  # every listed name is a real timm pretrained tag
        assert timm.models.get_pretrained_cfg(name) is not None, name


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_preprocess_any_mode(models_dir, mode):
    loaded = models.load_model("tiny-rope_mixed")
    image = Image.new("RGB", (50, 30), (255, 0, 0)).convert(mode)
    x = loaded.preprocess(image, 32)
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32 and torch.isfinite(x).all()


def test_preprocess_normalises_with_model_stats(models_dir):
    loaded = models.load_model("tiny-ape")  # card mean 0.5, std 0.25
    x = loaded.preprocess(Image.new("RGB", (40, 40), (255, 0, 128)), 16)
    assert torch.allclose(x[0, :, 5, 5], torch.tensor([2.0, -2.0, (128 / 255 - 0.5) / 0.25]), atol=1e-5)
    with pytest.raises(ValueError, match="not a positive multiple of the patch size"):
        loaded.preprocess(Image.new("RGB", (40, 40)), 30)
