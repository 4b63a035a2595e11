"""Specs from timm's own configuration, no name-based dispatch, APE resampled the paper's way, and
checkpoints that do not fit their architecture (library, CLI, Home page)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest
from PIL import Image
from timm.data import create_transform, resolve_data_config

from rope_viz import families, models, rope
from rope_viz.models import ape, hub, registry

ROOT = Path(__file__).resolve().parent.parent
# The family of every curated hub model, written out by hand from timm's model definitions.
EXPECTED_FAMILY = {
    **{n: ("naver_mixed" if "_mixed" in n else "naver_axial") for n in hub.PAPER_MODELS if "_rope" in n},
    **{n: "ape" for n in hub.PAPER_MODELS if n.startswith("deit3")},
    "eva02_tiny_patch14_336.mim_in22k_ft_in1k": "eva02", "eva02_small_patch14_336.mim_in22k_ft_in1k": "eva02",
    "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k": "eva02",
    "vit_medium_patch16_rope_reg1_gap_256.sbb_in1k": "sbb", "vit_betwixt_patch16_rope_reg4_gap_256.sbb_in1k": "sbb",
    "vit_base_patch16_rope_reg1_gap_256.sbb_in1k": "sbb",
    "vit_pe_core_tiny_patch16_384.fb": "pe", "vit_pe_core_small_patch16_384.fb": "pe",
    "vit_pe_core_base_patch16_224.fb": "pe",
    "vit_small_patch16_dinov3.lvd1689m": "dinov3", "vit_small_patch16_dinov3_qkvb.lvd1689m": "dinov3",
    "vit_base_patch16_dinov3.lvd1689m": "dinov3",
    "vit_small_patch16_224.augreg_in21k_ft_in1k": "ape", "vit_base_patch16_224.augreg2_in21k_ft_in1k": "ape",
    "gemma4_vit_167m_enc.gemma4_e4b_it": "gemma4",
    "qwen3_vit_88m_enc.qwen3_5_0_8b": "qwen3", "deepseek_vit_412m_enc.deepseek_v4_1_flash": "deepseek",
}


def test_every_hub_spec_is_timm_own_configuration():
    assert set(EXPECTED_FAMILY) == set(hub.HUB_MODELS)
    for name in hub.HUB_MODELS:
        spec = models.get_spec(name)
        reference = resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
        assert (spec.mean, spec.std) == (tuple(reference["mean"]), tuple(reference["std"])), name
        assert (spec.interpolation, spec.crop_pct) == (reference["interpolation"], reference["crop_pct"]), name
        assert spec.train_res == reference["input_size"][-1] and spec.family == EXPECTED_FAMILY[name], name
        assert spec.mean_std_source == "timm pretrained_cfg"
    for name in ("vit_base_patch16_rope_mixed_ape_224.naver_in1k", "vit_pe_core_tiny_patch16_384.fb"):
        assert hub.compute_hub_spec(name) == models.get_spec(name)  # the on-disk spec cache is faithful
    dino = models.get_spec("vit_small_patch16_dinov3.lvd1689m")
    assert (dino.num_prefix_tokens, dino.num_registers, dino.num_classes, dino.pos) == (5, 4, 0, "rope_axial")
    assert models.get_spec("eva02_tiny_patch14_336.mim_in22k_ft_in1k").mean == (0.48145466, 0.4578275, 0.40821073)
    with pytest.raises(models.ModelLoadError, match="has no classifier head .* so an accuracy sweep needs a model"):
        models.needs_classifier(dino, "an accuracy sweep")


def test_preprocess_is_timm_eval_transform():
    """LoadedModel.preprocess makes the same input as timm's own eval transform for the model, on a
    non-square image, for specs that differ in interpolation, crop ratio and mean/std."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (203, 317, 3), dtype=np.uint8))
    seen = set()
    for name in hub.HUB_MODELS:
        spec = models.get_spec(name)
        if (spec.interpolation, spec.crop_pct, spec.mean) in seen:
            continue
        seen.add((spec.interpolation, spec.crop_pct, spec.mean))
        config = resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
        expected = create_transform(**config)(image)  # (3, R, R)
        got = models.LoadedModel(module=torch.nn.Identity(), spec=spec).preprocess(image, spec.train_res)
        assert got.shape == (1, *expected.shape), name
        torch.testing.assert_close(got[0], expected, atol=1e-6, rtol=0, msg=name)
    assert len(seen) >= 3  # bicubic and bilinear, crop 0.9 and 1.0, ImageNet and CLIP statistics


def tiny_checkpoint(tmp_path, arch: str, num_classes: int = 0, **kwargs) -> Path:
    """Random weights of a two-block, two-head variant of `arch` as a .safetensors file."""
    torch.manual_seed(0)
    module = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    path = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


SHRINK = dict(depth=2, embed_dim=128, num_heads=2, img_size=64)


@pytest.fixture
def local_registry(monkeypatch):
    """Local registrations of one test stay in that test."""
    monkeypatch.setattr(registry, "_LOCAL", {})


def test_family_and_preprocessing_ignore_a_misleading_name(tmp_path, local_registry):
    """A DINOv3 checkpoint registered under a naver name is still DINOv3, with DINOv3's tokens and stats."""
    path = tiny_checkpoint(tmp_path, "vit_small_patch16_dinov3", **SHRINK)
    spec = models.register_local(path, "vit_small_patch16_dinov3.lvd1689m", model_kwargs=SHRINK,
                                 name="vit_small_patch16_rope_mixed_224")
    assert (spec.family, spec.pos, spec.num_prefix_tokens, spec.num_registers) == ("dinov3", "rope_axial", 5, 4)
    loaded = models.load_model(spec)
    assert families.family_of(loaded.module).key == "dinov3" and rope.model_freqs(loaded.module).shape == (2, 2, 32, 2)
    path = tiny_checkpoint(tmp_path, "eva02_tiny_patch14_224", num_classes=3, **{**SHRINK, "img_size": 56})
    spec = models.register_local(path, "eva02_tiny_patch14_336.mim_in22k_ft_in1k", name="deit3_small_patch16_224",
                                 model_kwargs={**SHRINK, "img_size": 56})
    assert (spec.family, spec.pos, spec.patch_size, spec.num_classes) == ("eva02", "rope_axial_ape", 14, 3)
    assert spec.mean == timm.data.resolve_model_data_config(
        timm.create_model("eva02_tiny_patch14_336.mim_in22k_ft_in1k", pretrained=False, device="meta"))["mean"]


NAME_DISPATCH = [
    r"pos_from_arch",  # the removed helper
    r"type\([^)]*\)\.__name__\s*[=!]=",  # class-name checks
    r"[\"'][\w.-]+[\"']\s+(not\s+)?in\s+(spec\.)?(name|arch|base|model_name)\b",  # substrings of a model's name
    r"(?<![\w.])(spec\.)?(name|arch|base|model_name)\.(startswith|endswith)\(",  # its prefix or suffix
    r"(?<![\w.])(spec\.)?(name|arch|base|model_name)\.split\([\"']_",  # its parts
]


def test_no_code_path_dispatches_on_a_model_name():
    sources = sorted((ROOT / "rope_viz").glob("*.py")) + sorted((ROOT / "pages").glob("*.py"))
    offenders = []
    for source in sources:
        for number, line in enumerate(source.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if any(re.search(p, code) for p in NAME_DISPATCH):
                offenders.append(f"{source.name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_ape_paper_way_is_plain_bicubic_exactly():
    torch.manual_seed(0)
    module = timm.create_model("vit_small_patch16_rope_ape_224", pretrained=False, depth=1, dynamic_img_size=True)
    grid = (20, 14)  # 320 x 224 px: not the training grid, not square
    table = module.pos_embed.detach()  # (1, 14 * 14, C), no prefix rows (no_embed_class)
    expected = F.interpolate(table.reshape(1, 14, 14, -1).permute(0, 3, 1, 2), size=grid, mode="bicubic",
                             align_corners=False).permute(0, 2, 3, 1).reshape(1, -1, table.shape[-1])
    assert torch.equal(ape.resample_paper(table, (14, 14), grid), expected)
    patches = torch.randn(1, *grid, module.embed_dim)  # what patch_embed gives (NHWC, dynamic size)
    ape.set_ape_resampling(module, "paper")
    paper, _ = module._pos_embed(patches)
    assert torch.equal(paper[:, 1:], patches.flatten(1, 2) + expected)  # CLS first, then patches + table
    assert ape.ape_resampling_of(module) == "paper"
    ape.set_ape_resampling(module, "timm")
    antialiased, _ = module._pos_embed(patches)
    assert (antialiased - paper).abs().max() > 1e-4  # timm's antialiased default really differs
    with pytest.raises(ape.RopeVizError, match="valid: paper, timm"):
        ape.set_ape_resampling(module, "nearest")
    assert models.get_spec("vit_small_patch16_rope_mixed_ape_224.naver_in1k").ape_resample == "paper"
    assert models.get_spec("deit3_base_patch16_224.fb_in1k").ape_resample == "paper"
    assert models.get_spec("eva02_small_patch14_336.mim_in22k_ft_in1k").ape_resample == "timm"


@pytest.fixture(scope="module")
def naver_mixed_checkpoint(tmp_path_factory):
    """A naver RoPE-Mixed ViT-S checkpoint as naver's training script saves it: {'model': ...}, flat freqs."""
    torch.manual_seed(0)
    module = timm.create_model("vit_small_patch16_rope_mixed_224", pretrained=False)
    state = dict(module.state_dict())
    state["freqs"] = state.pop("rope.freqs").reshape(2, 12, -1)  # (2, L, H * D/2)
    path = tmp_path_factory.mktemp("naver") / "rope_mixed_small.pth"
    torch.save({"model": {k: v.half() for k, v in state.items()}}, path)
    return path


WRONG_ARCH = {
    "vit_small_patch16_rope_224": "holds learned RoPE-Mixed frequencies (freqs (2, 12, 192)), but the chosen "
                                  "architecture is naver RoPE-Axial, which has none",
    "vit_base_patch16_rope_mixed_224": "has RoPE-Mixed frequencies of shape (2, 12, 192) (4608 values), but the "
                                       "chosen architecture expects (2, 12, 12, 32)",
}


@pytest.mark.parametrize("arch", list(WRONG_ARCH))
def test_wrong_architecture_is_one_sentence(naver_mixed_checkpoint, arch, local_registry):
    with pytest.raises(models.ModelLoadError) as err:
        models.register_local(naver_mixed_checkpoint, arch)
    message = str(err.value)
    assert WRONG_ARCH[arch] in message and message.count(". ") == 0 and message.endswith(".")
    assert not registry._LOCAL
    with pytest.raises(models.ModelLoadError, match="is taken by a bundled or hub model"):
        models.register_local(naver_mixed_checkpoint, arch, name="deit3_small_patch16_224.fb_in1k")


def test_wrong_architecture_in_the_cli(naver_mixed_checkpoint, bundled_dir, tmp_path):
    env = {"PYTHONPATH": str(ROOT), "ROPE_VIZ_MODELS_DIR": str(bundled_dir), "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "rope_viz", "sweep", "--models",
                          f"{naver_mixed_checkpoint}@vit_small_patch16_rope_224", "--resolutions", "32"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: Checkpoint rope_mixed_small.pth")
    assert WRONG_ARCH["vit_small_patch16_rope_224"] in out.stderr


@pytest.mark.parametrize("arch", list(WRONG_ARCH))
def test_wrong_architecture_on_the_home_page(naver_mixed_checkpoint, bundled_dir, monkeypatch, arch, local_registry):
    monkeypatch.setenv("ROPE_VIZ_MODELS_DIR", str(bundled_dir))
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.run()
    at.text_input(key="local_path").input(str(naver_mixed_checkpoint))
    at.selectbox(key="local_arch").set_value(arch)
    at.button[0].click().run()
    assert not at.exception and len(at.error) == 1
    assert WRONG_ARCH[arch] in at.error[0].value
