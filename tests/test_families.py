"""families.py against timm itself: every family's frequencies, positions, override hook and capture.

References: the rope module's own embedding through timm's apply_rot_embed_cat, and timm's own
non-fused attention (attn.fused_attn = False, weights read at attn_drop). Random weights, depth 2.
"""
from __future__ import annotations

import copy
import threading

import pytest
import timm
import torch
from timm.layers import apply_rot_embed_cat

from rope_viz import capture, families, rope

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
    "ape": "deit3_small_patch16_224",
}
ROPE_FAMILIES = [k for k in FAMILY_MODELS if k != "ape"]
_BUILT: dict[str, torch.nn.Module] = {}


def family_model(key: str) -> torch.nn.Module:
    """A random-weight, two-block model of the family, with learned-looking mixed freqs and biases."""
    if key not in _BUILT:
        torch.manual_seed(0)
        module = timm.create_model(FAMILY_MODELS[key], pretrained=False, depth=2, embed_dim=128, num_heads=2,
                                   dynamic_img_size=True).eval()  # head_dim 64 as in every original
        with torch.no_grad():
            if hasattr(getattr(module, "rope", None), "freqs"):
                module.rope.freqs.add_(0.3 * torch.randn_like(module.rope.freqs))
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
    assert families.family_of(module).key == key.replace("_qkvb", "")


def test_ape_family_and_prefix_tokens():
    assert families.family_of(family_model("ape")).key == "ape"
    assert rope.model_freqs(family_model("ape")) is None
    assert families.prefix_tokens(family_model("dinov3")) == {"cls": 1, "registers": 4, "total": 5}
    assert families.prefix_tokens(family_model("sbb")) == {"cls": 0, "registers": 1, "total": 1}
    assert families.prefix_tokens(family_model("eva02")) == {"cls": 1, "registers": 0, "total": 1}


@pytest.mark.parametrize("key", ROPE_FAMILIES)
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("scale", SCALES)
def test_apply_rope_of_model_freqs_equals_timm_rotation(key, grid, scale):
    module = family_model(key)
    grid = (grid[0] * scale, grid[1] * scale)
    freqs = rope.model_freqs(module, grid)  # (L, H, D/2, 2)
    pos = rope.model_positions(module, grid)
    half = families.convention(module, grid).pairs == "half"
    embed = module.rope.get_embed(shape=list(grid))  # timm's own: (N, 2D) or (L, H, N, 2D)
    L, H, half_dim, _ = freqs.shape
    x = torch.randn(2, H, grid[0] * grid[1], 2 * half_dim)
    for layer in range(L):
        reference = apply_rot_embed_cat(x, embed[layer] if embed.ndim == 4 else embed, half=half)
        ours = rope.apply_rope(x, rope.angles(freqs[layer], pos), half=half)
        assert (ours - reference).abs().max().item() < 1e-5


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


def count_hooks(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def reference_attention(module, x, freqs=None, grid=None):
    """timm's own non-fused attention weights, read at attn_drop (under an override when given)."""
    ref = copy.deepcopy(module)
    maps = {}
    for i, block in enumerate(ref.blocks):
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda m, a, out, i=i: maps.__setitem__(i, out))
    with torch.no_grad():
        if freqs is None:
            ref(x)
        else:
            with families.override_freqs(ref, freqs, grid):
                ref(x)
    return [maps[i] for i in range(len(ref.blocks))]


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


@pytest.mark.parametrize("key", ["naver_mixed", "dinov3", "pe"])
def test_capture_inside_override_records_the_overridden_rotation(key):
    module = family_model(key)
    grid = (3, 5)
    patch = patch_of(module)
    x = torch.randn(1, 3, grid[0] * patch, grid[1] * patch)
    freqs = rope.model_freqs(module, grid) * 0.5
    with families.override_freqs(module, freqs, grid):
        qk = capture.capture_qk(module, x)
    reference = reference_attention(module, x, freqs, grid)
    plain = reference_attention(module, x)
    for layer, ref in enumerate(reference):
        assert (capture.attention_map(qk, layer) - ref).abs().max().item() < 1e-5
    assert (reference[1] - plain[1]).abs().max().item() > 1e-4


def test_unknown_rope_module_is_one_sentence():
    module = timm.create_model("vit_small_patch16_rope_224", pretrained=False, depth=1, rope_type="mrope", rope_grid_indexing="ij",
                               rope_mrope_section=(0, 4, 4))
    with pytest.raises(families.FamilyError, match="RotaryEmbeddingMRope is not a supported position scheme; supported: naver"):
        families.family_of(module)
