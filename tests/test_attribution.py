"""Attributions: IG completeness, shapes at several resolutions, gradients through every position kind."""
from __future__ import annotations

import pytest
import torch

from rope_viz import attribution, models


def model(pos: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    arch = models.eva_architecture(pos, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                                   num_classes=10, init_values=None)
    module = models.build_eva(arch).eval()
    with torch.no_grad():  # logits of a trained model's size, so completeness is not trivially tiny
        module.head.weight.normal_(0, 1.0)
        if getattr(module, "rope", None) is not None and hasattr(module.rope, "freqs"):
            module.rope.freqs.add_(0.3 * torch.randn_like(module.rope.freqs))
    return module.requires_grad_(False)


@pytest.mark.parametrize("pos", models.POS_KINDS)
def test_ig_completeness_within_reported_delta(pos):
    m = model(pos)
    x = torch.randn(2, 3, 32, 32)
    a = attribution.attribute(m, x, "ig", steps=64)
    gap = attribution.completeness_gap(m, x, a)
    with torch.no_grad():
        logit_gap = (m(x) - m(torch.zeros_like(x))).gather(1, a.target.view(-1, 1))[:, 0]
    assert logit_gap.abs().min() > 0.1  # a real difference to explain
    torch.testing.assert_close(gap, a.delta.float(), atol=1e-4, rtol=1e-3)  # delta is what captum reports
    assert (a.delta.abs() < 0.05 * logit_gap.abs() + 1e-3).all()  # and it is small


@pytest.mark.parametrize("resolution", [32, 48, 72])
def test_shapes_at_several_resolutions(resolution):
    m = model("rope_mixed_ape")
    x = torch.randn(2, 3, resolution, resolution)
    g = resolution // 8
    expected = {"ig": (resolution, resolution), "saliency": (resolution, resolution),
                "smoothgrad": (resolution, resolution), "occlusion": (g, g), "gradcam": (g, g), "rollout": (g, g)}
    for method, shape in expected.items():
        a = attribution.attribute(m, x, method, steps=8, samples=4)
        assert a.map.shape == (2, *shape), method
        assert (a.raw is None) == (method in ("gradcam", "rollout")), method
        assert torch.isfinite(a.map).all(), method
    with pytest.raises(ValueError, match="valid: ig, saliency"):
        attribution.attribute(m, x, "lime")
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        attribution.attribute(m, torch.randn(1, 3, 30, 32), "saliency")


def test_occlusion_map_is_the_logit_drop_of_each_patch():
    m = model("rope_axial")
    x = torch.randn(1, 3, 32, 32)
    a = attribution.attribute(m, x, "occlusion")
    t = int(a.target)
    with torch.no_grad():
        base = m(x)[0, t]
        hidden = x.clone()
        hidden[:, :, 8:16, 16:24] = 0  # patch (x=2, y=1)
        drop = base - m(hidden)[0, t]
    torch.testing.assert_close(a.map[0, 1, 2], drop, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos", models.POS_KINDS)
def test_gradients_flow_through_every_position_kind(pos):
    m = model(pos)
    x = torch.randn(1, 3, 40, 40, requires_grad=True)
    m(x)[0, 3].backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    if pos.startswith("rope_mixed"):  # the learned frequencies get a gradient too
        m.rope.freqs.requires_grad_(True)
        m(torch.randn(1, 3, 40, 40))[0, 3].backward()
        assert m.rope.freqs.grad is not None and m.rope.freqs.grad.abs().sum() > 0


def test_gradcam_leaves_the_shared_model_untouched_and_targets_work():
    m = model("rope_mixed")
    blocks = list(m.blocks)
    x = torch.randn(2, 3, 32, 32)
    a = attribution.attribute(m, x, "gradcam", target=4, block=0)
    assert list(m.blocks) == blocks and a.target.tolist() == [4, 4]
    assert sum(len(mod._forward_hooks) for mod in m.modules()) == 0
    with pytest.raises(ValueError, match="Block 5 is outside 0..1"):
        attribution.attribute(m, x, "gradcam", block=5)
