"""Attributions: IG completeness, shapes at several resolutions, gradients through every position kind."""
from __future__ import annotations

import threading

import pytest
import torch

from rope_viz import attribution, models
from rope_viz.errors import InputError


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


def test_ig_doubles_steps_until_delta_is_one_percent_of_the_logit_gap():
    m = model("rope_axial", seed=3)
    x = torch.randn(2, 3, 32, 32)
    a = attribution.attribute(m, x, "ig")
    with torch.no_grad():  # the gap from the model itself, independent of captum
        gap = (m(x) - m(torch.zeros_like(x))).gather(1, a.target.view(-1, 1))[:, 0]
    torch.testing.assert_close(a.logit_gap, gap, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.raw.sum((1, 2, 3)) - gap, a.delta, atol=1e-4, rtol=1e-3)  # completeness
    assert a.steps in (32, 64, 128, 256, 512)
    if a.capped:
        assert a.steps == 512 and (a.delta.abs() > 0.01 * gap.abs()).any()
    else:
        assert (a.delta.abs() <= 0.01 * gap.abs()).all()
    if a.steps > 32:  # the smallest doubling that meets the criterion: half as many steps did not
        half = attribution.attribute(m, x, "ig", steps=a.steps // 2)
        assert half.steps == a.steps // 2 and not half.capped
        assert (half.delta.abs() > 0.01 * gap.abs()).any()


def test_ig_cap_is_reported_and_fixed_steps_run_once():
    m = model("rope_mixed", seed=4)
    x = torch.randn(1, 3, 32, 32)
    capped = attribution.attribute(m, x, "ig", max_steps=2)
    assert capped.steps == 2 and capped.capped
    assert capped.delta.abs().item() > 0.01 * capped.logit_gap.abs().item()
    note = attribution.ig_warning(capped.steps, float(capped.delta), float(capped.logit_gap), capped.capped)
    assert note.startswith("Integrated Gradients misses completeness by") and "cap of 2 steps was reached" in note
    loose = attribution.attribute(m, x, "ig", tolerance=10.0)  # anything passes: no doubling
    assert loose.steps == 32 and not loose.capped
    fixed = attribution.attribute(m, x, "ig", steps=8)
    assert fixed.steps == 8 and not fixed.capped
    assert attribution.ig_warning(64, 0.001, 1.0, False) is None


@pytest.mark.parametrize("options,error,message", [
    ({"n_steps": 256}, TypeError, "unknown option(s) n_steps; valid options: steps, max_steps"),
    ({"steps": 0}, InputError, "IG steps must be a whole number of at least 1"),
    ({"steps": "many"}, InputError, "IG steps must be a whole number"),
    ({"max_steps": -1}, InputError, "max_steps must be a whole number of at least 1"),
    ({"tolerance": 0.0}, InputError, "IG tolerance must be a positive fraction"),
    ({"baseline": "white"}, InputError, "Unknown IG baseline 'white'; valid: mean, black"),
    ({"samples": 0}, InputError, "samples must be a whole number of at least 1"),
])
def test_attribution_options_are_validated(options, error, message):
    m = model("ape")
    with pytest.raises(error) as err:
        attribution.attribute(m, torch.randn(1, 3, 32, 32), "ig", **options)
    assert message in str(err.value)


def test_randomized_copy_never_reseeds_the_global_rng_and_is_the_same_in_every_thread():
    loaded = models.load_model("scenes-rope-mixed")
    serial = attribution.randomized_copy(loaded, seed=3)
    draws = []
    for seed in (1, 2):  # the old code reseeded to 0: both draws after it were equal
        torch.manual_seed(seed)
        attribution.randomized_copy(loaded, seed=3)
        draws.append(torch.rand(4))
    assert not torch.equal(*draws)
    results, stop = [None] * 6, threading.Event()

    def noisy():  # other sessions using (and seeding) the global RNG meanwhile
        while not stop.is_set():
            torch.manual_seed(int(torch.randint(0, 100, ())))
            torch.randn(64)

    def work(i):
        results[i] = attribution.randomized_copy(loaded, seed=3)

    others = [threading.Thread(target=noisy) for _ in range(2)]
    workers = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    [t.start() for t in others + workers]
    [t.join() for t in workers]
    stop.set()
    [t.join() for t in others]
    want = serial.state_dict()
    for got in results:
        assert all(torch.equal(v, want[k]) for k, v in got.state_dict().items())
    # Random, not trained: every matrix differs from the loaded model's; the RoPE-Mixed frequencies are a
    # fresh mixed initialisation (per-pair magnitudes 1/10^(4i/D) in two orthogonal directions).
    trained = loaded.module.state_dict()
    assert all(not torch.equal(v, trained[k]) for k, v in want.items() if v.dim() >= 2)
    assert not torch.equal(attribution.randomized_copy(loaded, seed=4).head.weight, serial.head.weight)
    freqs = serial.rope.freqs.permute(1, 2, 3, 0)  # (L, H, D/2, 2)
    half = freqs.shape[2] // 2
    magnitudes = 1.0 / 10.0 ** (torch.arange(half) * 4 / (2 * freqs.shape[2]))
    torch.testing.assert_close(freqs.norm(dim=-1), magnitudes.repeat(2).expand_as(freqs[..., 0]))
    torch.testing.assert_close((freqs[..., :half, :] * freqs[..., half:, :]).sum(-1),
                               torch.zeros_like(freqs[..., :half, 0]), atol=1e-6, rtol=0)
