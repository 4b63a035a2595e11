"""rope.py against timm's rotary classes, the naver complex-number formulas, and RoPE's properties."""
from __future__ import annotations

import math

import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from timm.layers import apply_rot_embed_cat

from rope_viz import rope


@pytest.mark.parametrize("arch", ["vit_small_patch16_rope_224", "vit_small_patch16_rope_mixed_224",
                                  "vit_small_patch16_rope_mixed_ape_224"])
@pytest.mark.parametrize("grid", [(14, 14), (5, 9), (9, 5)])
def test_apply_rope_matches_timm_rotation(arch, grid):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, depth=3, dynamic_img_size=True).eval()
    freqs = rope.model_freqs(model)  # (L, H, D/2, 2)
    L, H, half, _ = freqs.shape
    assert (L, H, half) == (3, 6, 32)
    h, w = grid
    embed = model.rope.get_embed(shape=[h, w])  # cat: (N, 2D); mixed: (L, H, N, 2D)
    x = torch.randn(2, H, h * w, 2 * half)
    positions = rope.grid_positions(h, w)
    for layer in range(L):
        reference = apply_rot_embed_cat(x, embed[layer] if embed.ndim == 4 else embed)
        ours = rope.apply_rope(x, rope.angles(freqs[layer], positions))
        assert (ours - reference).abs().max().item() < 1e-5


def naver_axial_cis(dim, end_x, end_y, theta=100.0):
    """naver rope-vit compute_axial_cis, re-derived: complex rotations (N, D/2)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32)
    t_x, t_y = t % end_x, torch.div(t, end_x, rounding_mode="floor")
    cis_x = torch.polar(torch.ones(len(t), len(freqs)), torch.outer(t_x, freqs))
    cis_y = torch.polar(torch.ones(len(t), len(freqs)), torch.outer(t_y, freqs))
    return torch.cat([cis_x, cis_y], dim=-1)


def naver_apply(x, cis):
    """naver apply_rotary_emb: view consecutive pairs as complex numbers and multiply."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * cis).flatten(-2)


def test_axial_matches_naver_complex_formula():
    x = torch.randn(3, 4, 6 * 7, 32)
    cis = naver_axial_cis(32, end_x=7, end_y=6)  # 6 rows, 7 columns
    ours = rope.apply_rope(x, rope.angles(rope.axial_freqs(32, 100.0), rope.grid_positions(6, 7)))
    assert (ours - naver_apply(x, cis)).abs().max().item() < 1e-5


def test_mixed_matches_naver_complex_formula():
    heads, dim, h, w = 3, 16, 5, 4
    freqs = rope.mixed_freqs(dim, heads, seed=3)[0]  # (H, D/2, 2)
    # naver compute_mixed_cis: freqs (2, H, D/2), t_x, t_y (N,)
    t = torch.arange(h * w, dtype=torch.float32)
    t_x, t_y = t % w, torch.div(t, w, rounding_mode="floor")
    fx, fy = freqs[..., 0], freqs[..., 1]
    phase = t_x[None, :, None] * fx[:, None, :] + t_y[None, :, None] * fy[:, None, :]  # (H, N, D/2)
    cis = torch.polar(torch.ones_like(phase), phase)
    x = torch.randn(2, heads, h * w, dim)
    ours = rope.apply_rope(x, rope.angles(freqs, rope.grid_positions(h, w)))
    assert (ours - naver_apply(x, cis)).abs().max().item() < 1e-5


def test_axial_freqs_exact_values():
    f = rope.axial_freqs(8, theta=100.0)
    expected = torch.tensor([[1.0, 0.0], [0.1, 0.0], [0.0, 1.0], [0.0, 0.1]])
    assert torch.allclose(f, expected, atol=1e-7)


def test_mixed_init_structure_matches_timm():
    f = rope.mixed_freqs(32, 4, theta=10.0, seed=1, depth=2)  # (2, 4, 16, 2)
    torch.manual_seed(0)
    ref = timm.layers.pos_embed_sincos.init_random_2d_freqs(32, 2, 4, temperature=10.0).permute(1, 2, 3, 0)
    # Same magnitudes per pair; first and second halves orthogonal in every head.
    assert torch.allclose(f.norm(dim=-1), ref.norm(dim=-1), atol=1e-6)
    first, second = f[..., :8, :], f[..., 8:, :]
    assert (first * second).sum(-1).abs().max() < 1e-6
    assert torch.equal(f, rope.mixed_freqs(32, 4, theta=10.0, seed=1, depth=2))
    assert not torch.equal(f, rope.mixed_freqs(32, 4, theta=10.0, seed=2, depth=2))


def test_grid_positions_row_major_xy():
    p = rope.grid_positions(2, 3)
    assert p.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
    assert torch.allclose(rope.grid_positions(2, 3, scale=0.5), p * 0.5)


vectors = st.lists(st.floats(-3, 3, allow_nan=False), min_size=16, max_size=16)
coords = st.tuples(st.integers(-40, 40), st.integers(-40, 40))


@settings(max_examples=60, deadline=None)
@given(q=vectors, k=vectors, pa=coords, pb=coords, shift=coords, seed=st.integers(0, 1000))
def test_qk_depends_only_on_position_difference(q, k, pa, pb, shift, seed):
    q, k = torch.tensor(q, dtype=torch.float64), torch.tensor(k, dtype=torch.float64)
    for freqs in (rope.axial_freqs(16).double(), rope.mixed_freqs(16, 1, seed=seed)[0, 0].double()):
        def logit(a, b):
            pos = torch.tensor([a, b], dtype=torch.float64)
            ang = rope.angles(freqs, pos).double()  # (2, D/2)
            return (rope.apply_rope(q[None], ang[:1]) * rope.apply_rope(k[None], ang[1:])).sum().item()

        moved = logit((pa[0] + shift[0], pa[1] + shift[1]), (pb[0] + shift[0], pb[1] + shift[1]))
        # Angles are fp32 by design: the error bound is |q| |k| times a few ulps of an 80-radian angle.
        assert math.isclose(logit(pa, pb), moved, abs_tol=2e-5 * (q.norm() * k.norm()).item() + 1e-9)


@settings(max_examples=40, deadline=None)
@given(x=vectors, p=coords)
def test_rotation_keeps_norms(x, p):
    x = torch.tensor(x, dtype=torch.float64)[None]
    ang = rope.angles(rope.mixed_freqs(16, 1, seed=0)[0, 0], torch.tensor([p], dtype=torch.float32)).double()
    assert math.isclose(rope.apply_rope(x, ang).norm().item(), x.norm().item(), rel_tol=1e-9, abs_tol=1e-9)


def test_similarity_kernel_axial_is_separable_and_peaks_at_query():
    f = rope.axial_freqs(32)
    k = rope.similarity_kernel(f, 9, 11, (4, 3))  # (h=9, w=11)
    assert k.shape == (9, 11) and k[3, 4].item() == pytest.approx(1.0)
    # Axial = (x-wave + y-wave) / 2: K(dx, dy) + K(0, 0) = K(dx, 0) + K(0, dy): the cross artefact.
    assert torch.allclose(k + k[3, 4], k[3:4, :] + k[:, 4:5], atol=1e-6)
    mixed = rope.similarity_kernel(rope.mixed_freqs(32, 1, seed=5)[0, 0], 9, 11, (4, 3))
    assert not torch.allclose(mixed + mixed[3, 4], mixed[3:4, :] + mixed[:, 4:5], atol=1e-3)
    with pytest.raises(ValueError, match="outside"):
        rope.similarity_kernel(f, 9, 11, (11, 0))


def test_spectrum_peaks_sit_at_the_frequencies():
    f = torch.tensor([[2 * math.pi * 8 / 64, 0.0], [0.0, 2 * math.pi * 4 / 64]])  # on exact FFT bins
    omega, power = rope.compute_spectrum(f, size=64)
    assert omega.shape == (64,) and power.shape == (64, 64)
    peaks = {(round(omega[c].item(), 4), round(omega[r].item(), 4)) for r, c in (power > 0.5).nonzero().tolist()}
    expected = {(round(s * f[0, 0].item(), 4), 0.0) for s in (1, -1)} | {(0.0, round(s * f[1, 1].item(), 4)) for s in (1, -1)}
    assert {(abs(a), abs(b)) for a, b in peaks} == {(abs(a), abs(b)) for a, b in expected}
    axial_power = rope.compute_spectrum(rope.axial_freqs(32), 64)[1]
    off_axis = axial_power.clone()
    off_axis[30:35, :] = 0  # zero a band around w_y = 0 and w_x = 0: what remains is off-axis energy
    off_axis[:, 30:35] = 0
    assert off_axis.max() < 1e-3
    mixed_power = rope.compute_spectrum(rope.mixed_freqs(32, 1, seed=5)[0, 0], 64)[1]
    mixed_off = mixed_power.clone()
    mixed_off[30:35, :] = 0
    mixed_off[:, 30:35] = 0
    assert mixed_off.max() > 0.1


def test_model_freqs_none_for_ape_and_axial_from_config():
    assert rope.model_freqs(timm.create_model("deit3_small_patch16_224", pretrained=False, depth=1)) is None
    assert rope.model_freqs(timm.create_model("vit_small_patch16_rope_224", depth=2, use_rot_pos_emb=False)) is None
    m = timm.create_model("vit_small_patch16_rope_224", pretrained=False, depth=2)
    f = rope.model_freqs(m)
    assert f.shape == (2, 6, 32, 2) and torch.allclose(f[1, 5], rope.axial_freqs(64, 100.0))


@pytest.mark.parametrize("head_dim,theta", [(62, 100.0), (0, 100.0), (64, 0.0), (64, -1.0), (64, float("inf"))])
def test_bad_config_raises_one_sentence(head_dim, theta):
    with pytest.raises(ValueError) as err:
        rope.axial_freqs(head_dim, theta)
    assert str(err.value).endswith(".") and "\n" not in str(err.value)
