"""Is this RoPE right? Two checks of a model against what its adapter says about it.

(a) relative: RoPE makes patch-to-patch logits depend on position differences only, so shifting every
    patch position by one offset (through the adapter's override) must leave layer 0's patch-to-patch
    logits unchanged. Later layers are reported too: with a CLS token or registers, which are never
    rotated, a shift reaches them through the prefix tokens (and an APE table is never shifted).
(b) layout: the rotation the adapter's frequencies, positions and pair layout imply must be the
    rotation the model applies to q and k (captured before and after it, every layer).
A wrong pair layout or wrong offsets fail (b) with one sentence that says what differs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rope_viz import adapters
from rope_viz.measure import capture
from rope_viz.rotary import rope2d

SHIFT = (3.0, 2.0)  # patches: large enough to turn every pair, not a multiple of any period
CHECK_GRID = (6, 6)  # patches: small, and what Gemma 4's 3 x 3 pool and Qwen3's 2 x 2 merge take
TOLERANCE = 1e-4  # relative to the largest |logit| or |q|: float32 rounding is ~1e-6 of it


@dataclass
class SelfCheck:
    """ok and one sentence; per-layer figures: the largest patch-to-patch logit change under the shift,
    the largest change of logits involving prefix tokens, and the largest rotation mismatch (relative)."""

    ok: bool
    message: str
    relative: list[float] = field(default_factory=list)  # per layer, patch-to-patch, relative to max |logit|
    prefix: list[float] = field(default_factory=list)  # per layer, rows and columns of CLS/registers
    layout: list[float] = field(default_factory=list)  # per layer, max |model's q, k - adapter's| / max |q, k|


def _mismatch(pre: torch.Tensor, post: torch.Tensor, angles: torch.Tensor, pairs: str) -> float:
    """Largest |model's rotation - the implied one| relative to max |post|. Shapes: pre, post (H, P, D)"""
    implied = rope2d.apply_rope(pre, angles, pairs=pairs)
    return float((implied - post).abs().max() / post.abs().max().clamp_min(1e-30))


def _diagnosis(pre: torch.Tensor, post: torch.Tensor, freqs: torch.Tensor, positions: torch.Tensor,
               pairs: str) -> str:
    """What differs, in words: another pair layout, a constant offset of every patch, or something else.

    Shapes: pre, post (H, P, D) layer 0's patches; freqs (H, D/2, 2); positions (P, 2)
    """
    angles = rope2d.angles(freqs, positions)  # (H, P, D/2)
    other = [p for p in rope2d.PAIR_LAYOUTS if p != pairs and _mismatch(pre, post, angles, p) <= TOLERANCE]
    if other:
        return f"the model pairs its channels as '{other[0]}', not '{pairs}' as the adapter says"
    (pe, po), (qe, qo) = rope2d.split_pairs(pre, pairs), rope2d.split_pairs(post, pairs)
    turned = torch.atan2(qo, qe) - torch.atan2(po, pe) - angles  # (H, P, D/2): the model's extra turn
    turned = torch.remainder(turned + torch.pi, 2 * torch.pi) - torch.pi
    live = (torch.hypot(pe, po) > 1e-3 * torch.hypot(pe, po).max())
    spread = torch.remainder(turned - turned[:, :1] + torch.pi, 2 * torch.pi) - torch.pi  # the same at every patch?
    spread = spread.abs().masked_fill(~live, 0).max()
    if spread < 1e-3 and turned.abs().max() > 1e-3:  # the same extra angle at every patch: a constant offset
        slow = freqs[0].norm(dim=-1) < 1.0  # pairs whose extra turn cannot have wrapped for a few patches
        delta = torch.linalg.lstsq(freqs[0][slow].double(), turned[0, 0][slow].double()[:, None]).solution[:, 0]
        return (f"the model places every patch at a different offset (by about ({float(delta[0]):+.2f}, "
                f"{float(delta[1]):+.2f}) patches in x, y) than the adapter says")
    return "the model turns its pairs by other angles than the adapter's frequencies and positions"


def _logits(qk: capture.QK) -> torch.Tensor:
    """Every layer's logits. Shapes: -> (L, H, N, N)"""
    return (qk.q[0] * qk.scale) @ qk.k[0].transpose(-2, -1)


def self_check(module: torch.nn.Module, adapter: adapters.Adapter | None = None, seed: int = 0) -> SelfCheck:
    """Run both checks on a random image (a torch.Generator seeded with `seed`; the global RNG untouched)
    at a small grid. `adapter`: check another adapter against the model (default: its own).
    APE-only models get one sentence and ok=True: there is no rotation to check.
    """
    module = adapters.module_of(module)
    resolved = adapters.resolve(module)
    adapter, body = adapter or resolved.adapter, resolved.body
    if not adapter.has_rope:
        return SelfCheck(True, f"{adapter.label} models add an absolute table and rotate nothing, so there is no "
                               "RoPE to check.")
    grid = CHECK_GRID
    ph, pw = adapters.patch_size(body)
    gen = torch.Generator().manual_seed(seed)
    device = next(body.parameters()).device
    x = torch.randn(1, 3, grid[0] * ph, grid[1] * pw, generator=gen).to(device)
    npt = adapters.prefix_tokens(module)["total"]

    # (b) layout: the model's own rotation against the adapter's
    qk = capture.capture_qk(module, x, keep_pre=True)
    freqs, positions = adapter.read_freqs(body, grid).float(), adapter.positions(body, grid)
    pairs = adapter.layout(body)[1]
    layout = []
    for layer in range(qk.num_layers):
        angles = rope2d.angles(freqs[layer], positions)  # (H, P, D/2)
        worst = 0.0
        for pre, post in ((qk.q_pre, qk.q), (qk.k_pre, qk.k)):
            implied = rope2d.apply_rope(pre[0, layer, :, npt:], angles, pairs=pairs)  # (H, P, D)
            scale = post[0, layer, :, npt:].abs().max().clamp_min(1e-30)
            worst = max(worst, float((implied - post[0, layer, :, npt:]).abs().max() / scale))
        layout.append(worst)

    # (a) relative: a uniform shift of every patch through the model's own adapter
    own = adapters.model_freqs(module, grid)
    with adapters.override_freqs(module, own, grid):
        base = _logits(capture.capture_qk(module, x))
    with adapters.override_freqs(module, own, grid, shift=SHIFT):
        moved = _logits(capture.capture_qk(module, x))
    top = base.abs().amax(dim=(1, 2, 3)).clamp_min(1e-30)  # (L,)
    change = (moved - base).abs()
    relative = (change[:, :, npt:, npt:].amax(dim=(1, 2, 3)) / top).tolist()
    prefix = [0.0] * len(relative) if not npt else \
        (torch.maximum(change[:, :, :npt].amax(dim=(1, 2, 3)), change[:, :, :, :npt].amax(dim=(1, 2, 3))) / top).tolist()

    what = []
    if max(layout) > TOLERANCE:
        reason = _diagnosis(qk.q_pre[0, 0, :, npt:], qk.q[0, 0, :, npt:], freqs[0], positions, pairs)
        what.append(f"{reason} (the rotations differ by up to {max(layout):.2g} of |q|)")
    if relative[0] > TOLERANCE:
        what.append(f"a uniform shift of every patch changes layer 0's patch-to-patch logits by {relative[0]:.2g} "
                    "of the largest logit (not relative)")
    if what:
        return SelfCheck(False, f"{adapter.label}: " + "; and ".join(what) + ".", relative, prefix, layout)
    return SelfCheck(True, f"{adapter.label}: the rotation matches the model's own in every layer (within "
                           f"{max(layout):.1e} of |q|) and layer 0's patch-to-patch logits do not move under a "
                           f"shift (within {relative[0]:.1e} of the largest logit).", relative, prefix, layout)
