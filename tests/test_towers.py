"""Every Hugging Face vision tower against transformers' own code, on tiny random configs at two sizes.

Per tower (tests/tower_cases*.py): the rotation rope-viz reads (model_freqs, model_positions, pair layout,
token order) equals the tower's own apply_rotary_pos_emb* on its own position_embeddings; captured attention
equals transformers' eager attention weights (per window where windowed) in raster patch order; a position
method on the tower equals the same method applied by hand; the capture leaves no hook and the tower's
attention implementation as it was.
"""
from __future__ import annotations

import pytest
import torch

from helpers import count_hooks
from rope_viz import adapters, capture, positions, rope
from rope_viz.rotary import rope2d
from tower_cases_glm import CASES as GLM
from tower_cases_misc import CASES as MISC
from tower_cases_pixtral import CASES as PIXTRAL
from tower_cases_qwen import CASES as QWEN
from tower_checks import eager_maps, rotation_errors

CASES = [*QWEN, *GLM, *PIXTRAL, *MISC]
APE_ONLY = pytest.mark.skip(reason="an APE-only tower has no rotation to compare or change")


def _marks(case, rope_only: bool) -> list:
    return [APE_ONLY] if rope_only and not adapters.get_adapter(case.key).has_rope else []


def sized(rope_only: bool = False) -> list:
    """Every case at each of its sizes; with rope_only, APE-only towers' params are skipped."""
    return [pytest.param(case, size, id=f"{case.key}-{size[0]}x{size[1]}", marks=_marks(case, rope_only))
            for case in CASES for size in case.sizes]


def cases(rope_only: bool = False) -> list:
    return [pytest.param(case, id=case.key, marks=_marks(case, rope_only)) for case in CASES]


SIZED = sized()
_BUILT: dict[str, torch.nn.Module] = {}


def tower_of(case):
    """One built tower per case for the whole run (building is the slow part; tests never change it)."""
    if case.key not in _BUILT:
        _BUILT[case.key] = case.build()
    return _BUILT[case.key]


def image_for(tower, size, seed=0):
    return torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("case, size", sized(rope_only=True))
def test_rotation_is_the_towers_own(case, size):
    tower = tower_of(case)
    errors = rotation_errors(tower, image_for(tower, size), case.apply_own, check_prefix=case.check_prefix,
                             window_local=case.window_local)
    assert max(errors) < 1e-5, errors


@pytest.mark.parametrize("case, size", SIZED)
def test_captured_attention_is_transformers_eager_attention(case, size):
    tower = tower_of(case)
    image = image_for(tower, size)
    implementations = {id(a.config): a.config._attn_implementation for a in tower.adapter.attentions(tower.hf)}
    qk = capture.capture_qk(tower, image)
    reference = eager_maps(tower, image)
    assert qk.grid == (size[0] // tower.adapter.patch(tower.hf), size[1] // tower.adapter.patch(tower.hf))
    assert qk.num_tokens == qk.num_prefix_tokens + qk.grid[0] * qk.grid[1]
    for layer, ref in enumerate(reference):
        mine = capture.attention_map(qk, layer)[0]
        assert torch.allclose(mine, ref, atol=1e-5), (layer, (mine - ref).abs().max().item())
    assert count_hooks(tower) == 0
    assert {id(a.config): a.config._attn_implementation for a in tower.adapter.attentions(tower.hf)} == implementations


@pytest.mark.parametrize("case", CASES, ids=str)
def test_features_come_in_raster_order(case):
    tower = tower_of(case)
    size = case.sizes[-1]
    image = image_for(tower, size)
    features = tower.forward_features(image)
    qk = capture.capture_qk(tower, image)
    assert features.shape == (1, qk.num_tokens, tower.embed_dim)
    assert torch.allclose(qk.logits, features[:, qk.num_prefix_tokens:].mean(1), atol=1e-5)
    assert count_hooks(tower) == 0  # GLM-4V's one-forward hook on its last norm came off


@pytest.mark.parametrize("method", ["interpolate", "ntk"])
@pytest.mark.parametrize("case", cases(rope_only=True))
def test_position_method_equals_the_method_by_hand(case, method):
    """Layer 0's q under the method = its native q unrotated by the native angles and rotated by the
    method's angles, computed here from the training-grid frequencies (layer 0's input does not depend on
    positions). interpolate: w' = w * t / g per axis; ntk: the pure formula on the training frequencies."""
    tower = tower_of(case)
    size = case.sizes[-1]
    image = image_for(tower, size)
    body = adapters.body_of(tower)
    grid = (size[0] // tower.adapter.patch(tower.hf), size[1] // tower.adapter.patch(tower.hf))
    train = (max(1, grid[0] // 2), max(1, grid[1] // 2))  # a smaller training grid, so both methods change things
    native = capture.capture_qk(tower, image)
    with positions.apply_method(tower, method, grid, train):
        moved = capture.capture_qk(tower, image)
    base = rope.model_freqs(tower, train)[0]  # (H, D/2, 2) layer 0 at the training grid
    if method == "interpolate":
        by_hand = base * torch.tensor([train[1] / grid[1], train[0] / grid[0]])
    else:
        by_hand = rope2d_ntk(base, grid, train)
    if not (tower.adapter.grid_dependent and method == "interpolate"):  # normalising towers interpolate natively
        assert not torch.allclose(by_hand, rope.model_freqs(tower, grid)[0])  # the method changes the rotation
    pos = rope.model_positions(tower, grid)
    npt, pairs = native.num_prefix_tokens, tower.adapter.layout(body)[1]
    own = rope2d.angles(rope.model_freqs(tower, grid)[0], pos)
    for mine, ref in ((moved.q, native.q), (moved.k, native.k)):
        unrotated = rope2d.apply_rope(ref[0, 0, :, npt:], -own, pairs=pairs)
        expected = rope2d.apply_rope(unrotated, rope2d.angles(by_hand, pos), pairs=pairs)
        assert torch.allclose(mine[0, 0, :, npt:], expected, atol=1e-4), (mine[0, 0, :, npt:] - expected).abs().max()
    assert count_hooks(tower) == 0


def rope2d_ntk(base, grid, train):
    """NTK-aware base change by hand (bloc97): on each head's frequency ladder the fastest pair keeps its
    frequency and the slowest is divided by s, with s = g / t on its axis (at least 1); a pair at place
    e = ln(|w|max / |w|) / ln(|w|max / |w|min) is multiplied by s^-e, its x part by s_x^-e and y part by s_y^-e.
    Shapes: base (H, D/2, 2) -> (H, D/2, 2)"""
    sx, sy = max(1.0, grid[1] / train[1]), max(1.0, grid[0] / train[0])
    out = base.double().clone()
    for h in range(base.shape[0]):
        mag = base[h].double().norm(dim=-1)
        top, bottom = mag[mag > 0].max(), mag[mag > 0].min()
        for j in range(base.shape[1]):
            if mag[j] > 0 and top > bottom:
                e = float(torch.log(top / mag[j]) / torch.log(top / bottom))
                out[h, j, 0] *= sx ** -e
                out[h, j, 1] *= sy ** -e
    return out.float()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_log_n_scales_every_logit(case):
    tower = tower_of(case)
    size = case.sizes[0]
    image = image_for(tower, size)
    native = capture.capture_qk(tower, image)
    with positions.scale_logits(tower, 1.5):
        scaled = capture.capture_qk(tower, image)
    logits = lambda qk: qk.q[0, 0] @ qk.k[0, 0].transpose(-2, -1)  # noqa: E731  layer 0: input unchanged
    assert torch.allclose(logits(scaled), 1.5 * logits(native), atol=1e-4, rtol=1e-4)
