"""capture.py against timm's own non-fused attention, plus hooks, threads and the statistics."""
from __future__ import annotations

import threading

import pytest
import torch

import helpers
from helpers import count_hooks, reference_attention
from rope_viz import capture, models


def tiny_model(pos: str, seed: int = 0, img_size: int = 32) -> torch.nn.Module:
    return helpers.tiny_model(pos, seed, img_size, depth=3)  # three layers: rollout multiplies through them


@pytest.mark.parametrize("pos", models.POS_KINDS)
@pytest.mark.parametrize("resolution", [32, 64])  # the training grid and twice it
def test_maps_and_rows_equal_timm_non_fused(pos, resolution):
    module = tiny_model(pos)
    x = torch.randn(2, 3, resolution, resolution)
    reference = reference_attention(module, x)
    qk = capture.capture_qk(module, x)
    g = resolution // 8
    assert qk.q.shape == (2, 3, 2, 1 + g * g, 16) and qk.grid == (g, g) and qk.num_prefix_tokens == 1
    for layer, ref in enumerate(reference):
        torch.testing.assert_close(capture.attention_map(qk, layer), ref, atol=1e-5, rtol=0)
    query = capture.patch_token(qk, g - 1, 1)
    rows = capture.attention_rows(qk, query)  # (B, L, H, N)
    torch.testing.assert_close(rows, torch.stack([r[:, :, query] for r in reference], 1), atol=1e-5, rtol=0)


def test_rope_is_really_applied_to_captured_q():
    """RoPE-only models: q.k of two patches depends on their offset only when no content differs."""
    module = tiny_model("rope_axial")
    qk = capture.capture_qk(module, torch.randn(1, 3, 32, 32))
    pre = {}
    handle = module.blocks[0].attn.q_norm.register_forward_hook(lambda m, a, out: pre.__setitem__("q", out))
    with torch.no_grad():
        module(torch.randn(1, 3, 32, 32))
    handle.remove()
    assert pre["q"].shape[-2:] == qk.q.shape[-2:]
    assert not torch.allclose(qk.q[0, 0, :, 1:].norm(dim=-1), torch.zeros(1))
    # Rotation keeps each pair's norm: post-RoPE q has the norms of pre-RoPE q for the same input.
    x = torch.randn(1, 3, 32, 32)
    qk = capture.capture_qk(module, x)
    handle = module.blocks[0].attn.q_norm.register_forward_hook(lambda m, a, out: pre.__setitem__("q", out))
    with torch.no_grad():
        module(x)
    handle.remove()
    torch.testing.assert_close(qk.q[:, 0].norm(dim=-1), pre["q"].norm(dim=-1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(qk.q[:, 0, :, 2:], pre["q"][:, :, 2:], atol=1e-3)  # but rotated


def test_no_hook_remains_also_when_the_forward_raises():
    module = tiny_model("rope_mixed")
    capture.capture_qk(module, torch.randn(1, 3, 32, 32))
    assert count_hooks(module) == 0

    def explode(mod, args, out):
        raise RuntimeError("boom")

    handle = module.blocks[1].mlp.register_forward_hook(explode)
    with pytest.raises(RuntimeError, match="boom"):
        capture.capture_qk(module, torch.randn(1, 3, 32, 32))
    handle.remove()
    assert count_hooks(module) == 0


def test_eight_threads_capturing_at_once_get_the_serial_answers():
    module = tiny_model("rope_mixed_ape")
    inputs = [torch.randn(1, 3, 32 + 8 * (i % 3), 32) for i in range(8)]
    serial = [capture.capture_qk(module, x) for x in inputs]
    results, errors = [None] * 8, []
    barrier = threading.Barrier(8)

    def work(i):
        try:
            barrier.wait()
            results[i] = capture.capture_qk(module, inputs[i])
            module(inputs[(i + 1) % 8])  # plain forwards from other sessions at the same time
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(results, serial):
        assert torch.equal(got.q, want.q) and torch.equal(got.k, want.k) and got.grid == want.grid
    assert count_hooks(module) == 0


def test_rollout_rows_are_distributions_and_match_a_direct_product():
    module = tiny_model("rope_axial")
    qk = capture.capture_qk(module, torch.randn(1, 3, 32, 32))
    for fusion in capture.HEAD_FUSIONS:
        result = capture.rollout(qk, fusion)
        assert result.shape == (1, 17, 17)
        torch.testing.assert_close(result.sum(-1), torch.ones(1, 17))
    N, expected = 17, torch.eye(17)
    for layer in range(3):
        a = 0.5 * capture.attention_map(qk, layer)[0].mean(0) + 0.5 * torch.eye(N)
        expected = (a / a.sum(-1, keepdim=True)) @ expected
    torch.testing.assert_close(capture.rollout(qk)[0], expected)
    with pytest.raises(ValueError, match="valid: mean, max, min"):
        capture.rollout(qk, "median")


def test_distance_and_entropy_on_known_attention():
    """Hand-made q and k: uniform attention gives the mean pairwise distance and log(N) entropy."""
    g, npt, D = 4, 1, 8
    N = npt + g * g
    zeros = torch.zeros(1, 2, 1, N, D)
    qk = capture.QK(q=zeros, k=zeros, grid=(g, g), num_prefix_tokens=npt, scale=D ** -0.5)
    dist = capture.patch_distances((g, g))
    torch.testing.assert_close(capture.mean_attention_distance(qk), dist.mean().expand(1, 2, 1))
    torch.testing.assert_close(capture.attention_entropy(qk), torch.tensor(float(N)).log().expand(1, 2, 1))
    # Sharp attention on each patch itself: distance 0, entropy ~0.
    k = (torch.eye(N) * 100).view(1, 1, 1, N, N)  # each token's key is its own one-hot query
    sharp = capture.QK(q=k.clone(), k=k, grid=(g, g), num_prefix_tokens=npt, scale=1.0)
    assert capture.mean_attention_distance(sharp).item() < 1e-6
    assert capture.attention_entropy(sharp).item() < 1e-6


def test_bad_queries_and_sizes_get_one_sentence():
    module = tiny_model("ape")
    with pytest.raises(capture.CaptureError, match="not a multiple of the patch size"):
        capture.capture_qk(module, torch.randn(1, 3, 36, 32))
    qk = capture.capture_qk(module, torch.randn(1, 3, 32, 32))
    with pytest.raises(capture.CaptureError, match="outside 0..16"):
        capture.attention_rows(qk, 17)
    with pytest.raises(capture.CaptureError, match="outside the 4 x 4 grid"):
        capture.patch_token(qk, 4, 0)
    with pytest.raises(capture.CaptureError, match="GiB is free"):
        capture.check_capture_memory(module, 10**6, 4096, 4096, "cpu")


def test_captures_a_timm_vision_transformer_too():
    import timm

    torch.manual_seed(0)
    module = timm.create_model("deit3_small_patch16_224", pretrained=False, img_size=64, depth=2,
                               dynamic_img_size=True).eval()
    x = torch.randn(1, 3, 64, 64)
    qk = capture.capture_qk(module, x)
    for layer, ref in enumerate(reference_attention(module, x)):
        torch.testing.assert_close(capture.attention_map(qk, layer), ref, atol=1e-5, rtol=0)
