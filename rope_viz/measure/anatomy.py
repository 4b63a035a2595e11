"""What a model does with its frequencies: one attention logit pair by pair, frequency usage per head,
frequency coverage of the image, token norms and attention sinks, and two self-checks of a model's RoPE.

One logit, pair by pair: with post-RoPE q and k split into their D/2 feature pairs (in the model's own
channel layout, rope2d.split_pairs), q . k * scale = sum_j scale (q_j . k_j), and each 2D term is
|q_j||k_j| cos(c_j + w_j . offset): c_j the content angle (between q_j and k_j before rotation) and
offset = p_key - p_query in patches (a prefix token, never rotated, contributes angle 0). Setting the
offset to 0 ("same position") keeps content only; setting c_j to 0 ("content removed") keeps position only.
Barbero et al. (ICLR 2025, "Round and Round We Go") read heads this way: high frequencies build
positional heads, low ones carry meaning.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch

from rope_viz import adapters
from rope_viz.measure import capture
from rope_viz.measure.selfcheck import SelfCheck, self_check  # noqa: F401  (anatomy.self_check)
from rope_viz.rotary import rope2d
from rope_viz.runtime.locking import model_lock

NO_POSITION_TURNS = 0.1  # a pair turning less than this across the image carries (almost) no position
POSITIONAL_SHARE, SEMANTIC_SHARE = 0.6, 0.4  # usage share on the faster half of pairs that names a head


def logit_pairs(qk: capture.QK, layer: int, head: int, query: int, key: int, batch: int = 0) -> torch.Tensor:
    """The attention logit of (query, key) as one term per frequency pair; the terms sum to q . k * scale.

    query, key: token indices in the capture (prefix tokens first). Shapes: -> (D/2,)
    """
    capture.check_query(qk, query)
    capture.check_query(qk, key)
    qe, qo = rope2d.split_pairs(qk.q[batch, layer, head, query], qk.pairs)  # (D/2,) each
    ke, ko = rope2d.split_pairs(qk.k[batch, layer, head, key], qk.pairs)
    return (qe * ke + qo * ko) * qk.scale


@dataclass
class LogitAnatomy:
    """One logit taken apart. Shapes: every tensor (D/2,); offset (dx, dy) patches, key minus query."""

    terms: torch.Tensor  # scale |q_j||k_j| cos(c_j + w_j . offset): the model's own, sums to `logit`
    same_position: torch.Tensor  # scale |q_j||k_j| cos(c_j): the offset set to 0
    content_removed: torch.Tensor  # scale |q_j||k_j| cos(w_j . offset): the content angle set to 0
    magnitude: torch.Tensor  # scale |q_j||k_j|
    content_angle: torch.Tensor  # c_j, rad
    position_angle: torch.Tensor  # w_j . p_key - w_j . p_query (0 for an unrotated token), rad
    freqs: torch.Tensor  # (D/2, 2) w_j in rad/patch
    offset: tuple[float, float]
    logit: float


def _token_angles(qk: capture.QK, freqs_head: torch.Tensor, positions: torch.Tensor, token: int) -> torch.Tensor:
    """w_j . p of a token (0 for prefix tokens, which are never rotated). Shapes: -> (D/2,)"""
    if token < qk.num_prefix_tokens:
        return torch.zeros(freqs_head.shape[0])
    return freqs_head @ positions[token - qk.num_prefix_tokens]


def logit_anatomy(qk: capture.QK, freqs: torch.Tensor, positions: torch.Tensor, layer: int, head: int,
                  query: int, key: int, batch: int = 0) -> LogitAnatomy:
    """logit_pairs plus its two counterfactuals, from the model's frequencies and positions on the capture's
    grid (rope.model_freqs(module, qk.grid), rope.model_positions(module, qk.grid)).

    Shapes: freqs (L, H, D/2, 2), positions (gh * gw, 2) -> LogitAnatomy
    """
    terms = logit_pairs(qk, layer, head, query, key, batch)
    qe, qo = rope2d.split_pairs(qk.q[batch, layer, head, query], qk.pairs)
    ke, ko = rope2d.split_pairs(qk.k[batch, layer, head, key], qk.pairs)
    magnitude = torch.hypot(qe, qo) * torch.hypot(ke, ko) * qk.scale
    total = torch.atan2(ko, ke) - torch.atan2(qo, qe)  # angle from q_j to k_j after rotation
    w = freqs[layer, head].float()
    position = _token_angles(qk, w, positions, key) - _token_angles(qk, w, positions, query)
    content = torch.remainder(total - position + math.pi, 2 * math.pi) - math.pi
    p_of = lambda t: positions[t - qk.num_prefix_tokens] if t >= qk.num_prefix_tokens else None  # noqa: E731
    pq, pk = p_of(query), p_of(key)
    offset = tuple(float(v) for v in (pk - pq)) if pq is not None and pk is not None else (math.nan, math.nan)
    return LogitAnatomy(terms=terms, same_position=magnitude * torch.cos(content),
                        content_removed=magnitude * torch.cos(position), magnitude=magnitude, content_angle=content,
                        position_angle=position, freqs=w, offset=offset, logit=float(terms.sum()))


# ---------------------------------------------------------------- frequency usage

def frequency_usage(qk: capture.QK, batch: int = 0) -> torch.Tensor:
    """How much each pair can move the patch-to-patch logits: the mean over query and key patches of
    scale |q_j(a)||k_j(b)|, which is scale * mean_a |q_j(a)| * mean_b |k_j(b)|. Shapes: -> (L, H, D/2)"""
    npt = qk.num_prefix_tokens
    qe, qo = rope2d.split_pairs(qk.q[batch, :, :, npt:], qk.pairs)  # (L, H, P, D/2)
    ke, ko = rope2d.split_pairs(qk.k[batch, :, :, npt:], qk.pairs)
    return torch.hypot(qe, qo).mean(2) * torch.hypot(ke, ko).mean(2) * qk.scale


def head_kinds(usage: torch.Tensor, freqs: torch.Tensor) -> list[list[dict]]:
    """Per layer and head: the share of usage on the faster half of its pairs (|w_j| above the head's
    median) and the head's kind: 'positional' (share >= 0.6), 'semantic' (share <= 0.4) or 'mixed'.

    Shapes: usage (L, H, D/2), freqs (L, H, D/2, 2) -> L lists of H dicts {share, kind}
    """
    mag = freqs.norm(dim=-1)  # (L, H, D/2)
    fast = mag > mag.median(dim=-1, keepdim=True).values
    share = (usage * fast).sum(-1) / usage.sum(-1).clamp_min(1e-30)  # (L, H)
    kind = lambda s: "positional" if s >= POSITIONAL_SHARE else "semantic" if s <= SEMANTIC_SHARE else "mixed"  # noqa: E731
    return [[{"share": float(s), "kind": kind(float(s))} for s in row] for row in share]


# ---------------------------------------------------------------- coverage

def frequency_coverage(freqs_head: torch.Tensor, grid: tuple[int, int], train_grid: tuple[int, int]) -> list[dict]:
    """Per pair: |w| (rad/patch), its period (patches), turns across the image at the training grid and at
    `grid` (turns = (|w_x| gw + |w_y| gh) / 2 pi: the angle the pair sweeps over the image's extent in
    patches), and flags: under 0.1 turn on `grid` (carries no position), over pi rad/patch (neighbours
    alias), and the RIFLEx pair (Zhao et al. 2025): the one whose period is closest, in ratio, to the
    training image's extent along its direction.

    Shapes: freqs_head (D/2, 2) rad/patch on `grid` -> D/2 rows
    """
    gh, gw = grid
    th, tw = train_grid
    w = freqs_head.double()
    mag = w.norm(dim=-1)  # (D/2,)
    turns = (w[:, 0].abs() * gw + w[:, 1].abs() * gh) / (2 * math.pi)
    train_turns = (w[:, 0].abs() * tw + w[:, 1].abs() * th) / (2 * math.pi)
    direction = w / mag.clamp_min(1e-30)[:, None]
    extent = direction[:, 0].abs() * tw + direction[:, 1].abs() * th  # training extent along w, patches
    period = 2 * math.pi / mag.clamp_min(1e-30)
    ratio = torch.where(mag > 0, (period / extent).log().abs(), torch.full_like(mag, math.inf))
    riflex = int(ratio.argmin()) if torch.isfinite(ratio).any() else -1
    return [{"pair": j, "|w| (rad/patch)": float(mag[j]), "period (patches)": float(period[j]) if mag[j] > 0 else math.inf,
             "turns at training grid": float(train_turns[j]), "turns at this grid": float(turns[j]),
             "no position": bool(turns[j] < NO_POSITION_TURNS), "aliasing": bool(mag[j] > math.pi),
             "RIFLEx": j == riflex} for j in range(len(mag))]


# ---------------------------------------------------------------- token norms and sinks

def token_norms(loaded_or_module, images: torch.Tensor) -> torch.Tensor:
    """The L2 norm of every block's output token (prefix tokens first): registers and sinks stand out.

    Shapes: images (B, 3, H, W) normalised -> (B, L, N)
    """
    module = adapters.module_of(loaded_or_module)
    body = adapters.body_of(module)
    norms, owner = {}, threading.get_ident()

    def keep(index):
        def hook(block, args, out):
            if threading.get_ident() == owner:  # another session's forward through the shared model: not ours
                norms[index] = out.detach().float().norm(dim=-1)
        return hook

    handles = [block.register_forward_hook(keep(i)) for i, block in enumerate(body.blocks)]
    try:
        with model_lock(module), torch.inference_mode():
            module(images)
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([norms[i] for i in range(len(body.blocks))], dim=1)


def attention_received(qk: capture.QK, layer: int, batch: int = 0) -> torch.Tensor:
    """The attention each token receives in a layer, averaged over heads and queries. Shapes: -> (N,)"""
    return capture.attention_map(qk, layer)[batch].mean(0).mean(0)
