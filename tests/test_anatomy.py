"""The anatomy of one logit, frequency usage, coverage, band ablation and the RoPE self-checks, against
hand computations and the models' own q and k (random weights, every family; the bundled models)."""
from __future__ import annotations

import math

import pytest
import torch

from helpers import count_hooks
from rope_viz import anatomy, capture, families, models, positions, rope
from test_families import FAMILY_MODELS, family_key, family_model, patch_of

ROPE_KEYS = [k for k in FAMILY_MODELS if k != "ape"]
BUNDLED = ["scenes-ape", "scenes-rope-axial", "scenes-rope-mixed", "scenes-rope-axial-ape", "scenes-rope-mixed-ape"]


def pair_indices(D: int, pairs: str) -> list[tuple[int, int]]:
    """The channel indices of every pair, written out from each layout's definition (not from rope2d)."""
    if pairs == "interleaved":
        return [(2 * j, 2 * j + 1) for j in range(D // 2)]
    if pairs == "half":
        return [(j, j + D // 2) for j in range(D // 2)]
    q = D // 4  # axis-half: a block of D/2 channels per axis, half-split inside each
    return [(i, i + q) for i in range(q)] + [(2 * q + i, 3 * q + i) for i in range(q)]


def capture_of(module, grid=(3, 4)):
    torch.manual_seed(1)
    patch = patch_of(module)
    return capture.capture_qk(module, torch.randn(1, 3, grid[0] * patch, grid[1] * patch))


@pytest.mark.parametrize("key", list(FAMILY_MODELS))
def test_pair_terms_sum_to_the_captured_logit(key):
    module = family_model(key)
    qk = capture_of(module, (6, 6) if family_key(key) in ("gemma4", "qwen3") else (3, 4))
    npt, N = qk.num_prefix_tokens, qk.num_tokens
    D = qk.q.shape[-1]
    for layer in range(qk.num_layers):
        for query, key_token in ((npt, N - 1), (N - 1, npt + 1), (0, N - 2)):
            terms = anatomy.logit_pairs(qk, layer, 1, query, key_token)
            q, k = qk.q[0, layer, 1, query], qk.k[0, layer, 1, key_token]
            logit = float(q @ k) * qk.scale
            assert terms.shape == (D // 2,) and abs(float(terms.sum()) - logit) < 1e-5
            by_hand = torch.tensor([q[a] * k[a] + q[b] * k[b] for a, b in pair_indices(D, qk.pairs)]) * qk.scale
            torch.testing.assert_close(terms, by_hand, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", BUNDLED)
def test_pair_terms_sum_to_the_logit_of_the_bundled_models(name):
    loaded = models.load_model(name)
    qk = capture_of(loaded.module, (8, 8))
    # The logits behind the captured attention: softmax of the pair sums is the attention row itself.
    terms = torch.stack([anatomy.logit_pairs(qk, 3, 0, 5, key).sum() for key in range(qk.num_tokens)])
    torch.testing.assert_close(terms.softmax(-1), capture.attention_rows(qk, 5)[0, 3, 0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("key", ["naver_mixed", "dinov3", "gemma4", "qwen3"])
def test_counterfactuals_split_content_from_position(key):
    module = family_model(key)
    qk = capture_of(module, (6, 6))
    freqs, pos = rope.model_freqs(module, qk.grid), rope.model_positions(module, qk.grid)
    npt = qk.num_prefix_tokens
    a = anatomy.logit_anatomy(qk, freqs, pos, layer=1, head=0, query=npt + 2, key=npt + 15)
    assert abs(a.logit - float(a.terms.sum())) < 1e-6
    torch.testing.assert_close(a.terms, a.magnitude * torch.cos(a.content_angle + a.position_angle), atol=1e-5, rtol=1e-4)
    offset = tuple(float(v) for v in pos[15] - pos[2])
    assert a.offset == pytest.approx(offset)
    torch.testing.assert_close(a.position_angle, freqs[1, 0] @ torch.tensor(offset), atol=1e-5, rtol=1e-5)
    same = anatomy.logit_anatomy(qk, freqs, pos, layer=1, head=0, query=npt + 2, key=npt + 2)
    torch.testing.assert_close(same.content_removed, same.magnitude, atol=1e-6, rtol=1e-6)  # offset 0: cos 0 = 1
    torch.testing.assert_close(same.same_position, same.terms, atol=1e-5, rtol=1e-4)


def test_content_angle_is_the_angle_before_rotation():
    module = family_model("naver_axial")
    torch.manual_seed(1)
    x = torch.randn(1, 3, 48, 64)
    qk = capture.capture_qk(module, x, keep_pre=True)
    freqs, pos = rope.model_freqs(module, qk.grid), rope.model_positions(module, qk.grid)
    a = anatomy.logit_anatomy(qk, freqs, pos, layer=0, head=1, query=3, key=9)
    q0, k0 = qk.q_pre[0, 0, 1, 3], qk.k_pre[0, 0, 1, 9]  # interleaved pairs (2j, 2j+1)
    expected = torch.atan2(k0[1::2], k0[0::2]) - torch.atan2(q0[1::2], q0[0::2])
    expected = torch.remainder(expected + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(a.content_angle, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("key", ["naver_axial", "dinov3", "gemma4", "deepseek_classifier"])
def test_usage_equals_a_recomputation_from_captured_q_and_k(key):
    module = family_model(key)
    qk = capture_of(module, (6, 6))
    usage = anatomy.frequency_usage(qk)
    L, H, P = qk.num_layers, qk.q.shape[2], qk.num_tokens - qk.num_prefix_tokens
    D = qk.q.shape[-1]
    npt = qk.num_prefix_tokens
    idx = pair_indices(D, qk.pairs)
    expected = torch.zeros(L, H, D // 2)
    for j, (a, b) in enumerate(idx):
        qn = torch.hypot(qk.q[0, :, :, npt:, a], qk.q[0, :, :, npt:, b])  # (L, H, P)
        kn = torch.hypot(qk.k[0, :, :, npt:, a], qk.k[0, :, :, npt:, b])
        expected[:, :, j] = (qn[..., :, None] * kn[..., None, :]).sum((-2, -1)) / P ** 2 * qk.scale
    torch.testing.assert_close(usage, expected, atol=1e-6, rtol=1e-5)
    kinds = anatomy.head_kinds(usage, rope.model_freqs(module, qk.grid))
    assert len(kinds) == L and all(k["kind"] in ("positional", "semantic", "mixed") for row in kinds for k in row)


@pytest.mark.parametrize("key", list(FAMILY_MODELS))
def test_self_check_passes_every_family(key):
    module = family_model(key)
    result = anatomy.self_check(module)
    assert result.ok, result.message
    assert count_hooks(module) == 0
    if key == "ape":
        assert result.message.count(".") == 1 and "no RoPE to check" in result.message
    else:
        assert max(result.layout) < 1e-5 and result.relative[0] < 1e-5


@pytest.mark.parametrize("key", ["naver_axial", "naver_mixed", "eva02", "dinov3", "gemma4", "qwen3"])
def test_self_check_flags_a_swapped_layout_and_shifted_offsets(key):
    module = family_model(key)
    own = families.family_of(module)
    other = {"interleaved": "half", "half": "interleaved", "axis-half": "half"}

    class Swapped(type(own)):
        def layout(self, body):
            indexing, pairs = own.layout(body)
            return indexing, other[pairs]

    class Shifted(type(own)):
        def offset(self, body, grid):
            x, y = own.offset(body, grid)
            return x + 1.5, y + 0.5

    swapped = anatomy.self_check(module, adapter=Swapped())
    assert not swapped.ok and f"pairs its channels as '{own.layout(families.body_of(module))[1]}'" in swapped.message
    shifted = anatomy.self_check(module, adapter=Shifted())
    assert not shifted.ok and "(-1.50, -0.50) patches" in shifted.message
    assert swapped.message.count(". ") == 0 and shifted.message.endswith(").")  # one sentence each


@pytest.mark.parametrize("method", ["drop_low", "drop_high"])
@pytest.mark.parametrize("k", [0, 3])
def test_band_ablation_equals_zeroing_pairs_by_hand(method, k):
    module = family_model("naver_mixed")
    grid = (4, 5)
    own = rope.model_freqs(module, grid)  # (L, H, D/2, 2)
    hand = own.clone()
    mag = own.norm(dim=-1)
    for layer in range(own.shape[0]):
        for head in range(own.shape[1]):
            order = sorted(range(own.shape[2]), key=lambda j: (float(mag[layer, head, j]) * (1 if method == "drop_low" else -1), j))
            for j in order[:k]:
                hand[layer, head, j] = 0.0
    out = positions.method_for_model(module, method, grid, k=k)
    torch.testing.assert_close(out.freqs, hand)
    assert positions.method_for_model(module, f"{method}:{k}", grid).freqs.equal(out.freqs)
    x = torch.randn(1, 3, 4 * 16, 5 * 16)
    with positions.apply_method(module, method, grid, k=k):
        ablated = capture.capture_qk(module, x)
    with families.override_freqs(module, hand, grid):
        reference = capture.capture_qk(module, x)
    native = capture.capture_qk(module, x)
    torch.testing.assert_close(ablated.q, reference.q, atol=1e-5, rtol=0)
    if k == 0:
        torch.testing.assert_close(ablated.q, native.q, atol=1e-5, rtol=0)
    else:
        assert not torch.allclose(ablated.q, native.q, atol=1e-3)
    assert positions.method_label(f"{method}:{k}").startswith(f"drop the {k} ")
    with pytest.raises(positions.PositionMethodError, match="from 0 to 32"):
        positions.method_for_model(module, method, grid, k=33)
    assert positions.method_for_model(family_model("ape"), method, grid, k=k + 2) is None  # nothing rotates


def test_coverage_equals_a_hand_computation_for_axial_theta_100():
    freqs = rope.axial_freqs(64, theta=100.0)  # (32, 2): 16 pairs on x, then 16 on y, f_i = 100^(-4i/64)
    rows = anatomy.frequency_coverage(freqs, grid=(28, 28), train_grid=(14, 14))
    for i in range(16):
        f = 100 ** (-4 * i / 64)
        for row in (rows[i], rows[16 + i]):
            assert row["|w| (rad/patch)"] == pytest.approx(f, rel=1e-6)
            assert row["turns at training grid"] == pytest.approx(f * 14 / (2 * math.pi), rel=1e-6)
            assert row["turns at this grid"] == pytest.approx(f * 28 / (2 * math.pi), rel=1e-6)
            assert row["no position"] == (f * 28 / (2 * math.pi) < 0.1) and not row["aliasing"]
    # RIFLEx: the pair whose period 2 pi / f is closest (in ratio) to the 14-patch training grid.
    best = min(range(16), key=lambda i: abs(math.log(2 * math.pi / 100 ** (-4 * i / 64) / 14)))
    assert [r["pair"] for r in rows if r["RIFLEx"]] == [best]


def test_coverage_equals_a_hand_computation_for_dinov3_coordinates():
    module = family_model("dinov3")
    grid = (10, 10)
    freqs = rope.model_freqs(module, grid)[0, 0]  # (D/2, 2): 4 pi / (period * 10) rad/patch on one axis
    periods = families.body_of(module).rope.periods.double()  # (D/4,)
    rows = anatomy.frequency_coverage(freqs, grid, train_grid=(14, 14))
    for i, period in enumerate(periods):
        # Coordinates span [-1, 1] over the image whatever its size: 2 / period turns across it.
        for row in (rows[i], rows[len(periods) + i]):
            assert row["turns at this grid"] == pytest.approx(2 / float(period), rel=1e-5)
            assert row["turns at training grid"] == pytest.approx(2 / float(period) * 14 / 10, rel=1e-5)
    assert any(r["no position"] for r in rows) == bool((2 / periods < 0.1).any())


def test_token_norms_and_attention_received():
    module = family_model("dinov3")
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    norms = anatomy.token_norms(module, x)
    qk = capture.capture_qk(module, x)
    assert norms.shape == (1, 2, qk.num_tokens) and count_hooks(module) == 0
    # timm's own intermediates (block outputs before the final norm), prefix tokens first.
    with torch.inference_mode():
        _, inter = module.forward_intermediates(x, indices=[0, 1], norm=False, output_fmt="NLC",
                                                return_prefix_tokens=True)
    for layer, (patches, prefix) in enumerate(inter):
        torch.testing.assert_close(norms[0, layer], torch.cat([prefix, patches], 1)[0].norm(dim=-1))
    received = anatomy.attention_received(qk, 1)
    torch.testing.assert_close(received, capture.attention_map(qk, 1)[0].mean(0).mean(0))
    assert received.sum() == pytest.approx(1.0, abs=1e-5)
