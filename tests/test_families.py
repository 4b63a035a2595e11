"""families.py against timm itself: every family's frequencies, positions, override hook and capture.

References: the rope module's own embedding through timm's apply_rot_embed_cat, and timm's own
non-fused attention (attn.fused_attn = False, weights read at attn_drop). Random weights, depth 2.
"""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import timm
import torch
from timm.layers import apply_rot_embed_cat
from timm.models.gemma4_vit import apply_multidimensional_rope

from helpers import count_hooks, reference_attention
from rope_viz import capture, families, features, models, positions, rope
from rope_viz.app import views

# The smallest timm model of every family, shrunk to two blocks of two heads (head_dim and the rope
# configuration unchanged).
FAMILY_MODELS = {
    "naver_axial": "vit_small_patch16_rope_224",
    "naver_mixed": "vit_small_patch16_rope_mixed_ape_224",
    "eva02": "eva02_tiny_patch14_224",
    "sbb": "vit_medium_patch16_rope_reg1_gap_256",
    "pe": "vit_pe_core_tiny_patch16_384",
    "dinov3": "vit_small_patch16_dinov3",
    "dinov3_qkvb": "vit_small_patch16_dinov3_qkvb",
    "gemma4": "gemma4_vit_167m_enc",
    "gemma4_classifier": "gemma4_vit_167m",
    "qwen3": "qwen3_vit_88m_enc",
    "qwen3_classifier": "qwen3_vit_88m",
    "deepseek": "deepseek_vit_412m_enc",
    "deepseek_classifier": "deepseek_vit_412m",
    "ape": "deit3_small_patch16_224",
}
# Gemma4's encoder takes no dynamic_img_size (it patchifies any size) and its soft-token pool needs grids
# divisible by 3, so it returns raw tokens here; head_dim is an argument of its own. Qwen3's and DeepSeek's
# encoders take any grid by themselves; without their projectors (global_pool '') odd grids run too.
# Classifier wrappers keep their blocks under `.encoder`.
FAMILY_KWARGS = {"gemma4": dict(head_dim=64, intermediate_size=256, global_pool="none"),
                 "gemma4_classifier": dict(head_dim=64, intermediate_size=256, num_classes=5),
                 "qwen3": dict(global_pool=""), "qwen3_classifier": dict(num_classes=5),
                 "deepseek": dict(global_pool=""), "deepseek_classifier": dict(num_classes=5)}
ROPE_FAMILIES = [k for k in FAMILY_MODELS if k != "ape"]
TIMM_ROPE_FAMILIES = [k for k in ROPE_FAMILIES if not k.startswith("gemma4")]  # a `rope` module with get_embed


def family_key(key: str) -> str:
    """The adapter a table entry belongs to: variants and classifier wrappers share their encoder's."""
    return key.removesuffix("_qkvb").removesuffix("_classifier")
_BUILT: dict[str, torch.nn.Module] = {}


def family_model(key: str) -> torch.nn.Module:
    """A random-weight, two-block model of the family, with learned-looking mixed freqs and biases."""
    if key not in _BUILT:
        torch.manual_seed(0)
        kwargs = FAMILY_KWARGS.get(key, dict(dynamic_img_size=True))
        module = timm.create_model(FAMILY_MODELS[key], pretrained=False, depth=2, embed_dim=128, num_heads=2,
                                   **kwargs).eval()  # head_dim 64 as in every original
        with torch.no_grad():
            if hasattr(getattr(families.body_of(module), "rope", None), "freqs"):
                families.body_of(module).rope.freqs.add_(0.3 * torch.randn_like(families.body_of(module).rope.freqs))
            for name, p in module.named_parameters():
                if "token" in name or name.endswith("bias"):  # random CLS/registers: prefix tokens matter
                    p.normal_(0, 0.5)
                if "gamma" in name:  # layer scale 1, so that attention (and RoPE) moves the output
                    p.fill_(1.0)
        _BUILT[key] = module
    return _BUILT[key]


def patch_of(module) -> int:
    return capture.patch_size_of(module)


GRIDS = [(4, 4), (3, 5)]  # a square and a non-square grid
SCALES = [1, 2]  # two resolutions of each


@pytest.mark.parametrize("key", ROPE_FAMILIES)
def test_family_is_read_from_modules(key):
    module = family_model(key)
    assert families.family_of(module).key == family_key(key)


def test_ape_family_and_prefix_tokens():
    assert families.family_of(family_model("ape")).key == "ape"
    assert rope.model_freqs(family_model("ape")) is None
    assert families.prefix_tokens(family_model("dinov3")) == {"cls": 1, "registers": 4, "total": 5}
    assert families.prefix_tokens(family_model("sbb")) == {"cls": 0, "registers": 1, "total": 1}
    assert families.prefix_tokens(family_model("eva02")) == {"cls": 1, "registers": 0, "total": 1}


@pytest.mark.parametrize("key", TIMM_ROPE_FAMILIES)
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("scale", SCALES)
def test_apply_rope_of_model_freqs_equals_timm_rotation(key, grid, scale):
    module = family_model(key)
    grid = (grid[0] * scale, grid[1] * scale)
    freqs = rope.model_freqs(module, grid)  # (L, H, D/2, 2)
    pos = rope.model_positions(module, grid)
    half = families.convention(module, grid).pairs == "half"
    embed = families.body_of(module).rope.get_embed(shape=list(grid))  # timm's own: (N, 2D) or (L, H, N, 2D)
    L, H, half_dim, _ = freqs.shape
    x = torch.randn(2, H, grid[0] * grid[1], 2 * half_dim)
    for layer in range(L):
        reference = apply_rot_embed_cat(x, embed[layer] if embed.ndim == 4 else embed, half=half)
        ours = rope.apply_rope(x, rope.angles(freqs[layer], pos), half=half)
        assert (ours - reference).abs().max().item() < 1e-5


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("scale", SCALES)
def test_gemma4_rotation_equals_timm_multidimensional_rope(grid, scale):
    module = family_model("gemma4")
    grid = (grid[0] * scale, grid[1] * scale)
    freqs = rope.model_freqs(module, grid)  # (L, H, D/2, 2)
    pos = rope.model_positions(module, grid)
    conv = families.convention(module, grid)
    assert (conv.offset, conv.indexing, conv.pairs) == ((0.0, 0.0), "xy", "axis-half")
    # The model's own path: position ids from its patch embedder, cos/sin from its rotary module.
    image = torch.rand(1, 3, grid[0] * 16, grid[1] * 16)
    _, position_ids, _ = module.patch_embed(image)  # (1, N, 2) internal (x, y)
    cos, sin = module.rotary_emb(image, position_ids)  # (1, N, D)
    L, H, half_dim, _ = freqs.shape
    q = torch.randn(2, grid[0] * grid[1], H, 2 * half_dim)  # (B, N, H, D) as Gemma4Attention holds it
    reference = apply_multidimensional_rope(q, cos, sin, ndim=2, unsqueeze_dim=2)
    for layer in range(L):
        ours = rope.apply_rope(q.transpose(1, 2), rope.angles(freqs[layer], pos), pairs="axis-half")
        assert (ours.transpose(1, 2) - reference).abs().max().item() < 1e-5


def test_gemma4_freqs_are_the_hand_derived_ladder_and_family_facts():
    module = family_model("gemma4")
    D, theta = 64, module.rotary_emb.rope_theta  # 100
    f = theta ** (-torch.arange(D // 4, dtype=torch.float64) * 2 / (D // 2))  # theta^(-2i/(D/2)), i < D/4
    zeros = torch.zeros_like(f)
    expected = torch.cat([torch.stack([f, zeros], -1), torch.stack([zeros, f], -1)]).float()  # x block, y block
    freqs = rope.model_freqs(module, (3, 5))
    assert freqs.shape == (2, 2, D // 2, 2)
    torch.testing.assert_close(freqs, expected.expand(2, 2, -1, -1), atol=1e-7, rtol=1e-6)
    assert torch.equal(freqs, rope.model_freqs(module, (9, 4)))  # integer positions: no grid dependence
    assert families.prefix_tokens(module) == {"cls": 0, "registers": 0, "total": 0}
    assert families.train_grid(module) == (48, 48)  # timm's input_size 768 px / 16 px patches
    family = families.family_of(module)
    assert family.pos(module) == "rope_axial_ape" and family.display(module) == "Gemma4 + APE"
    classifier = family_model("gemma4_classifier")
    assert families.family_of(classifier).key == "gemma4" and families.body_of(classifier) is classifier.encoder


def test_normalised_families_depend_on_the_grid_and_offsets_are_theirs():
    dino, eva, naver = family_model("dinov3"), family_model("eva02"), family_model("naver_axial")
    assert not torch.equal(rope.model_freqs(dino, (4, 4)), rope.model_freqs(dino, (8, 8)))
    torch.testing.assert_close(rope.model_freqs(eva, (8, 8)), rope.model_freqs(eva, (16, 16)) * 2)  # ref 16 x 16
    assert torch.equal(rope.model_freqs(naver, (4, 4)), rope.model_freqs(naver, (9, 3)))
    assert families.convention(dino, (3, 5)).offset == (0.5 - 5 / 2, 0.5 - 3 / 2)  # patch centres in [-1, 1]
    assert families.convention(family_model("pe")).offset == (1.0, 1.0)
    assert families.convention(eva).indexing == "ij" and families.convention(naver).indexing == "xy"


def forward(module, x):
    with torch.inference_mode():
        return module.forward_features(x)


@pytest.mark.parametrize("key", ROPE_FAMILIES)
@pytest.mark.parametrize("grid", GRIDS)
def test_override_with_own_freqs_is_the_plain_forward(key, grid):
    module = family_model(key)
    patch = patch_of(module)
    x = torch.randn(1, 3, grid[0] * patch, grid[1] * patch)
    plain = forward(module, x)
    freqs = rope.model_freqs(module, grid)
    with families.override_freqs(module, freqs, grid):
        same = forward(module, x)
    with families.override_freqs(module, freqs * 1.7, grid):
        moved = forward(module, x)
    assert (same - plain).abs().max().item() < 1e-5
    assert (moved - plain).abs().max().item() > 1e-3
    assert count_hooks(module) == 0


def test_override_touches_only_the_calling_thread_and_checks_the_grid():
    module = family_model("dinov3")
    x = torch.randn(1, 3, 64, 64)
    plain = forward(module, x)
    other = {}
    with families.override_freqs(module, rope.model_freqs(module, (4, 4)) * 2, (4, 4)):
        worker = threading.Thread(target=lambda: other.__setitem__("out", forward(module, x)))
        worker.start()
        worker.join()
        assert not torch.allclose(forward(module, x), plain, atol=1e-3)
        with pytest.raises(families.FamilyError, match="4 x 4 grid"):
            forward(module, torch.randn(1, 3, 48, 48))
    assert torch.equal(other["out"], plain)
    assert count_hooks(module) == 0
    with pytest.raises(families.FamilyError, match="no rotary"):
        with families.override_freqs(family_model("ape"), torch.zeros(2, 6, 32, 2), (4, 4)):
            pass


@pytest.mark.parametrize("key", list(FAMILY_MODELS))
@pytest.mark.parametrize("grid", GRIDS)
def test_captured_attention_equals_timm_non_fused(key, grid):
    module = family_model(key)
    patch = patch_of(module)
    x = torch.randn(2, 3, grid[0] * patch, grid[1] * patch)
    qk = capture.capture_qk(module, x)
    assert qk.num_prefix_tokens == families.prefix_tokens(module)["total"] and qk.grid == grid
    for layer, ref in enumerate(reference_attention(module, x)):
        assert (capture.attention_map(qk, layer) - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("key", ["naver_mixed", "dinov3", "pe", "gemma4"])
def test_capture_inside_override_records_the_overridden_rotation(key):
    module = family_model(key)
    grid = (3, 5)
    patch = patch_of(module)
    x = torch.randn(1, 3, grid[0] * patch, grid[1] * patch)
    freqs = rope.model_freqs(module, grid) * 0.5
    with families.override_freqs(module, freqs, grid):
        qk = capture.capture_qk(module, x)
    reference = reference_attention(module, x, grid=grid, freqs=freqs)
    plain = reference_attention(module, x)
    for layer, ref in enumerate(reference):
        assert (capture.attention_map(qk, layer) - ref).abs().max().item() < 1e-5
    assert (reference[1] - plain[1]).abs().max().item() > 1e-4


def test_unknown_rope_module_is_one_sentence():
    module = timm.create_model("vit_small_patch16_rope_224", pretrained=False, depth=1, rope_type="mrope", rope_grid_indexing="ij",
                               rope_mrope_section=(0, 4, 4))
    with pytest.raises(families.FamilyError, match="RotaryEmbeddingMRope is not a supported position scheme; supported: naver"):
        families.family_of(module)


@pytest.mark.parametrize("method", list(positions.METHODS))
def test_gemma4_capture_under_every_method_equals_non_fused(method):
    module = family_model("gemma4")  # trained on 48 x 48 patches, run on 6 x 9
    x = torch.rand(1, 3, 6 * 16, 9 * 16)
    with positions.apply_method(module, method, (6, 9)):
        qk = capture.capture_qk(module, x)
    for layer, ref in enumerate(reference_attention(module, x, method, (6, 9))):
        assert (capture.attention_map(qk, layer) - ref).abs().max().item() < 1e-5
    assert count_hooks(module) == 0
    if method in ("interpolate", "log_n"):  # the method reached the model: attention moved
        plain = capture.capture_qk(module, x)
        assert (capture.attention_map(qk, 1) - capture.attention_map(plain, 1)).abs().max().item() > 1e-4


def test_gemma4_override_is_per_thread_checks_the_grid_and_shares_heads():
    module = family_model("gemma4")
    x = torch.rand(1, 3, 64, 64)
    plain = forward(module, x)
    freqs = rope.model_freqs(module, (4, 4))
    other = {}
    with families.override_freqs(module, freqs * 2, (4, 4)):
        worker = threading.Thread(target=lambda: other.__setitem__("out", forward(module, x)))
        worker.start()
        worker.join()
        assert not torch.allclose(forward(module, x), plain, atol=1e-3)
        with pytest.raises(families.FamilyError, match="4 x 4 grid"):
            forward(module, torch.rand(1, 3, 48, 48))
    assert torch.equal(other["out"], plain)
    per_head = freqs.clone()
    per_head[:, 1] *= 2
    with pytest.raises(families.FamilyError, match="shares one rotation across its heads"):
        with families.override_freqs(module, per_head, (4, 4)):
            pass
    assert count_hooks(module) == 0


def test_gemma4_soft_token_encoder_needs_a_multiple_of_its_pool():
    torch.manual_seed(0)
    module = timm.create_model("gemma4_vit_167m_enc", pretrained=False, depth=1, embed_dim=64, num_heads=1,
                               head_dim=64, intermediate_size=64).eval()  # global_pool 'soft', kernel 3
    with pytest.raises(families.FamilyError, match="multiple of 48 px; 64 x 64 px is not"):
        capture.capture_qk(module, torch.rand(1, 3, 64, 64))
    with pytest.raises(families.FamilyError, match="multiple of 48 px; 48 x 64 px is not"):
        features.compute_patch_features(module, torch.rand(1, 3, 48, 64))
    qk = capture.capture_qk(module, torch.rand(1, 3, 48, 96))
    assert qk.grid == (3, 6) and qk.q.shape == (1, 1, 1, 18, 64) and qk.scale == 1.0
    assert features.compute_patch_features(module, torch.rand(1, 3, 48, 96)).shape == (1, 3, 6, 64)


@pytest.mark.parametrize("key", ["dinov3", "eva02", "pe", "sbb"])
def test_default_capture_at_twice_the_training_grid_is_the_models_own_attention(key):
    """The Attention page's default (native) is what the model computes; extrapolate is not, for these."""
    module = family_model(key)
    th, tw = families.train_grid(module)
    patch = patch_of(module)
    spec = models.ModelSpec(name=key, source="local", pos="rope_axial", patch_size=patch, train_res=th * patch,
                            num_classes=0, class_names=(), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    loaded = models.LoadedModel(module=module, spec=spec)
    pixels = np.random.default_rng(0).integers(0, 256, (2 * th * patch, 2 * tw * patch, 3), dtype=np.uint8)
    x = loaded.normalise(torch.tensor(pixels).permute(2, 0, 1)[None])
    reference = reference_attention(module, x)
    native = views.capture_image(loaded, pixels)  # the page's default method
    extrapolated = views.capture_image(loaded, pixels, "extrapolate")
    for layer, ref in enumerate(reference):
        assert (capture.attention_map(native, layer) - ref).abs().max().item() < 1e-5
    assert (extrapolated.q - native.q).abs().max().item() > 0.1  # post-RoPE q the model never computes
    assert count_hooks(module) == 0


def test_qwen3_and_deepseek_specs_name_their_family_and_qwen3s_table():
    from rope_viz.models.specs import describe_module

    qwen_enc, qwen_cls = (describe_module(family_model(k)) for k in ("qwen3", "qwen3_classifier"))
    deep_enc, deep_cls = (describe_module(family_model(k)) for k in ("deepseek", "deepseek_classifier"))
    for info in (qwen_enc, qwen_cls):
        assert (info["family"], info["pos"], info["family_label"]) == ("qwen3", "rope_axial_ape", "Qwen3-VL ViT + APE")
        assert info["ape_resample"] == "own" and info["num_prefix_tokens"] == 0 and info["train_res"] == 768
    for info in (deep_enc, deep_cls):
        assert (info["family"], info["pos"], info["family_label"]) == ("deepseek", "rope_axial", "DeepSeek ViT")
        assert info["ape_resample"] == "" and info["train_res"] == 546
    # Qwen3's projector merges 2 x 2 patches: an odd grid is one sentence, not timm's assertion.
    with pytest.raises(families.FamilyError, match="multiple of 32 px; 48 x 64 px is not"):
        families.check_image_size(timm.create_model("qwen3_vit_88m_enc", pretrained=False, depth=1), 48, 64)
