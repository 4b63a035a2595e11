"""Position methods against hand-derived examples and timm's own reference-grid interpolation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from timm.layers import RotaryEmbeddingCat, apply_rot_embed_cat

from helpers import count_hooks
from rope_viz import capture, positions, rope
from rope_viz.errors import RopeVizError


def axial(head_dim=16, theta=100.0, layers=2, heads=3):
    return rope.axial_freqs(head_dim, theta).expand(layers, heads, -1, -1).clone()


@pytest.mark.parametrize("method", list(positions.METHODS))
def test_every_method_is_the_model_itself_on_the_training_grid(method):
    freqs = rope.mixed_freqs(16, 3, depth=2)
    out = positions.compute_positions(method, freqs, (5, 7), (5, 7))
    torch.testing.assert_close(out.freqs, freqs, rtol=0, atol=1e-7)
    assert out.logit_scale == pytest.approx(1.0)


def test_extrapolate_keeps_rad_per_patch():
    freqs = rope.mixed_freqs(16, 2)
    out = positions.extrapolate(freqs, (20, 9), (4, 4))
    assert torch.equal(out.freqs, freqs) and out.freqs is not freqs and out.logit_scale == 1.0


@pytest.mark.parametrize("grid,train", [((6, 10), (4, 4)), ((3, 5), (4, 6)), ((8, 8), (4, 4))])
def test_interpolate_equals_timm_reference_grid_rope(grid, train):
    """timm's EVA scheme: RotaryEmbeddingCat(ref_feat_shape=train) rotates exactly as interpolate() says."""
    head_dim = 16
    timm_rope = RotaryEmbeddingCat(head_dim, in_pixels=False, temperature=100.0, ref_feat_shape=list(train))
    # Hand-read of the same module's index positions: 'ij' indexing puts the row (y) first.
    bands = timm_rope.bands.float()  # (D/4,)
    zeros = torch.zeros_like(bands)
    freqs = torch.cat([torch.stack([zeros, bands], -1), torch.stack([bands, zeros], -1)])[None, None]  # (1,1,D/2,2)
    out = positions.interpolate(freqs, grid, train)
    x = torch.randn(1, 1, grid[0] * grid[1], head_dim)
    ours = rope.apply_rope(x, rope.angles(out.freqs[0, 0], rope.grid_positions(*grid)))
    theirs = apply_rot_embed_cat(x, timm_rope.get_embed(shape=list(grid)))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # The numbers themselves: w_x * tw / gw, w_y * th / gh.
    torch.testing.assert_close(out.freqs[..., 0], freqs[..., 0] * train[1] / grid[1])
    torch.testing.assert_close(out.freqs[..., 1], freqs[..., 1] * train[0] / grid[0])


def test_interpolate_align_corners_maps_end_patches_onto_each_other():
    freqs = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]])  # (1, 1, 2, 2)
    out = positions.interpolate(freqs, (9, 7), (5, 4), align_corners=True).freqs[0, 0]
    torch.testing.assert_close(out, torch.tensor([[3 / 6, 0.0], [0.0, 2 * 4 / 8]]))
    # Last patch x = 6 sits at the training grid's last position, 3.
    assert float(out[0, 0] * 6) == pytest.approx(3.0)


def test_ntk_hand_example_head_dim_8():
    """D = 8: two pairs per axis, w = 1 and 100^-1/2 = 0.1. s = 2: bloc97's base 100 * 2^(4/2) = 400
    gives 400^-1/2 = 0.05, i.e. the slow pair halves and the fast one stays."""
    freqs = rope.axial_freqs(8, 100.0)[None, None]
    out = positions.ntk(freqs, (8, 8), (4, 4))
    expected = torch.tensor([[1.0, 0.0], [0.05, 0.0], [0.0, 1.0], [0.0, 0.05]])
    torch.testing.assert_close(out.freqs[0, 0], expected)
    assert out.logit_scale == 1.0


@pytest.mark.parametrize("head_dim", [16, 64])
def test_ntk_on_axial_is_bloc97_base_change_per_axis(head_dim):
    theta, d_axis = 100.0, head_dim // 2  # each axis is a 1D RoPE of D/2 dimensions
    grid, train = (12, 8), (4, 4)  # s_y = 3, s_x = 2
    out = positions.ntk(axial(head_dim, theta), grid, train).freqs
    base_x = theta * 2.0 ** (d_axis / (d_axis - 2))
    base_y = theta * 3.0 ** (d_axis / (d_axis - 2))
    n = head_dim // 4
    torch.testing.assert_close(out[0, 0, :n], rope.axial_freqs(head_dim, base_x)[:n], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out[1, 2, n:], rope.axial_freqs(head_dim, base_y)[n:], rtol=1e-5, atol=1e-7)
    smaller = positions.ntk(axial(head_dim, theta), (2, 2), train).freqs  # grids below training: unchanged
    torch.testing.assert_close(smaller, axial(head_dim, theta))


def test_yarn_hand_example():
    """tw = th = 4; turns r = 4 |w| / 2 pi. r = 0.5 < alpha: w / s; r = 40 > beta: w; r = 16.5: halfway."""
    w = lambda r: r * 2 * math.pi / 4
    freqs = torch.tensor([[[[w(0.5), 0.0], [w(40.0), 0.0], [w(16.5), 0.0], [0.0, w(0.5)]]]])
    out = positions.yarn(freqs, (8, 12), (4, 4))  # s_x = 3, s_y = 2
    expected = torch.tensor([[w(0.5) / 3, 0.0], [w(40.0), 0.0], [w(16.5) * (0.5 / 3 + 0.5), 0.0], [0.0, w(0.5) / 2]])
    torch.testing.assert_close(out.freqs[0, 0], expected)
    assert out.logit_scale == pytest.approx((0.1 * math.log(math.sqrt(6)) + 1) ** 2)
    with pytest.raises(positions.PositionMethodError, match="alpha < beta"):
        positions.yarn(freqs, (8, 8), (4, 4), alpha=5, beta=2)


def test_log_n_scale_and_it_equals_sdpa_with_that_scale():
    out = positions.log_n(axial(), (8, 8), (4, 4))
    assert out.logit_scale == pytest.approx(math.log(64) / math.log(16)) == pytest.approx(1.5)
    torch.testing.assert_close(out.freqs, axial())
    B, L, H, N, D = 2, 1, 3, 65, 16
    q, k, v = torch.randn(B, L, H, N, D), torch.randn(B, L, H, N, D), torch.randn(B, H, N, D)
    qk = capture.QK(q=q, k=k, grid=(8, 8), num_prefix_tokens=1, scale=D ** -0.5 * out.logit_scale)
    rows = torch.stack([capture.attention_rows(qk, i)[:, 0] for i in range(N)], dim=2)  # (B, H, N, N)
    expected = F.scaled_dot_product_attention(q[:, 0], k[:, 0], v, scale=D ** -0.5 * out.logit_scale)
    torch.testing.assert_close(rows @ v, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(positions.PositionMethodError, match="at least 2 tokens"):
        positions.log_n(axial(), (4, 4), (1, 1))


def test_normalised_separate_is_interpolate_and_max_keeps_aspect():
    freqs = rope.mixed_freqs(16, 2, depth=2)
    torch.testing.assert_close(positions.normalised(freqs, (6, 10), (4, 4)).freqs,
                               positions.interpolate(freqs, (6, 10), (4, 4)).freqs)
    # DINOv3 'max': both axes step 2 / max(gh, gw); trained at 4 x 4 that is a factor 4 / 10 on x and y.
    out = positions.normalised(freqs, (6, 10), (4, 4), normalize="max").freqs
    torch.testing.assert_close(out, freqs * 0.4)
    torch.testing.assert_close(positions.normalised(freqs, (6, 10), (4, 4), normalize="min").freqs, freqs * 4 / 6)
    with pytest.raises(positions.PositionMethodError, match="valid: separate, max, min"):
        positions.normalised(freqs, (6, 10), (4, 4), normalize="mean")


def test_factory_names_the_valid_choices():
    with pytest.raises(ValueError, match="valid: native, extrapolate, interpolate, ntk, yarn, log_n, normalised") as err:
        positions.compute_positions("stretch", axial(), (8, 8), (4, 4))
    assert isinstance(err.value, RopeVizError)
    with pytest.raises(TypeError, match="valid: alpha, beta"):
        positions.compute_positions("yarn", axial(), (8, 8), (4, 4), gamma=2)
    with pytest.raises(TypeError, match="valid: none"):
        positions.compute_positions("ntk", axial(), (8, 8), (4, 4), alpha=2)
    with pytest.raises(positions.PositionMethodError, match="at least 1 x 1"):
        positions.compute_positions("ntk", axial(), (0, 8), (4, 4))


def test_scale_logits_equals_non_fused_attention_with_that_scale_and_leaves_no_hook():
    from rope_viz import models

    torch.manual_seed(0)
    arch = models.eva_architecture("rope_mixed", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                                   num_classes=4)
    module = models.build_eva(arch).eval()
    x = torch.randn(2, 3, 64, 64)
    scale = positions.log_n(rope.model_freqs(module), (8, 8), (4, 4)).logit_scale  # 1.5
    with positions.scale_logits(module, scale):
        qk = capture.capture_qk(module, x)
    plain = capture.capture_qk(module, x)
    torch.testing.assert_close(qk.q, plain.q * scale, atol=1e-5, rtol=1e-5)  # captured q carries the scale
    # timm's own non-fused attention, its q scaled the same way, read at attn_drop.
    maps = {}
    for i, block in enumerate(module.blocks):
        block.attn.fused_attn = False
    handles = [b.attn.attn_drop.register_forward_hook(lambda m, a, out, i=i: maps.__setitem__(i, out))
               for i, b in enumerate(module.blocks)]
    try:
        with positions.scale_logits(module, scale), torch.no_grad():
            logits = module(x)
    finally:
        for h in handles:
            h.remove()
        for block in module.blocks:
            block.attn.fused_attn = True
    for layer in range(2):
        torch.testing.assert_close(capture.attention_map(qk, layer), maps[layer], atol=1e-5, rtol=0)
    torch.testing.assert_close(qk.logits, logits, atol=1e-5, rtol=1e-5)  # fused SDPA forward = non-fused
    assert count_hooks(module) == 0
