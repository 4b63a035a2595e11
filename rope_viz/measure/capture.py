"""Exact attention from one forward: capture post-RoPE q and k, compute only what is shown.

Fused attention (SDPA) never materialises the weights, so instead of switching it off we keep q
and k of every layer (O(L H N D), no N x N) and recompute softmax(q K^T * scale) for exactly the
rows, maps and statistics a page draws. Token order everywhere: prefix tokens (CLS, registers)
first, then patches row-major, as in timm.

Hooks go on the shared model only for the duration of one forward, under a per-model lock, and
come off in `finally`; they record only for the thread that placed them.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from rope_viz import adapters
from rope_viz.rotary import rope2d
from rope_viz.runtime import memory
from rope_viz.errors import RopeVizError
from rope_viz.runtime.locking import model_lock
from rope_viz.adapters.towers import TowerAdapter
from rope_viz.measure.tower_capture import capture_tower

ROW_CHUNK = 1024  # query rows per matmul when a full map is needed: bounds the (B, H, chunk, N) buffer


class CaptureError(RopeVizError):
    """A capture could not run; the message is one sentence meant for the UI."""


@dataclass
class QK:
    """Post-RoPE queries and keys of every layer.

    Shapes: q, k (B, L, H, N, D) with N = num_prefix_tokens + gh * gw.
    """

    q: torch.Tensor
    k: torch.Tensor
    grid: tuple[int, int]  # (gh, gw) patches
    num_prefix_tokens: int
    scale: float  # softmax temperature, head_dim ** -0.5 in timm
    logits: torch.Tensor | None = None  # (B, C) output of the same forward
    pairs: str = "interleaved"  # the model's pair layout (rope2d.split_pairs), from its adapter
    q_pre: torch.Tensor | None = None  # (B, L, H, N, D) q and k before the rotation, with keep_pre=True
    k_pre: torch.Tensor | None = None
    segments: torch.Tensor | None = None  # (L, N) long: a query sees only keys of its own segment (windowed
    #   layers of Hugging Face towers); None: every layer is full attention

    @property
    def num_layers(self) -> int:
        return self.q.shape[1]

    @property
    def num_tokens(self) -> int:
        return self.q.shape[3]


def patch_size_of(module: torch.nn.Module) -> int:
    """The patch side in pixels (square patches), from the module's adapter body."""
    return adapters.patch_size(adapters.body_of(module))[0]


@dataclass(frozen=True)
class Sizes:
    """What a memory estimate needs of a model at one image size: tokens N (prefix tokens plus the patch
    grid), width C, depth L and heads H of its blocks."""

    tokens: int
    width: int
    depth: int
    heads: int


def sizes_of(loaded_or_module, height: int, width: int, patch: int | None = None) -> Sizes:
    """The model's Sizes for a height x width px image (patch: the patch side, default the module's own)."""
    resolved = adapters.resolve(loaded_or_module)
    body = resolved.body
    ph, pw = (patch, patch) if patch else adapters.patch_size(body)
    tokens = (height // ph) * (width // pw) + resolved.adapter.prefix_tokens(body)["total"]
    return Sizes(tokens=tokens, width=int(body.embed_dim), depth=len(body.blocks),
                 heads=int(body.blocks[0].attn.num_heads))


def estimate_capture_bytes(module: torch.nn.Module, batch: int, height: int, width: int) -> int:
    """Bytes a capture needs: stored q and k (fp32) plus the forward's own activations and one chunk
    of attention rows (a full map is computed ROW_CHUNK rows at a time)."""
    s = sizes_of(module, height, width)
    return (memory.qk_bytes(batch, s.depth, s.tokens, s.width) + memory.forward_bytes(batch, s.tokens, s.width)
            + memory.scores_bytes(batch, s.heads, min(s.tokens, ROW_CHUNK), s.tokens))


def check_capture_memory(module: torch.nn.Module, batch: int, height: int, width: int, device) -> None:
    """Raise CaptureError, with the estimate, when a capture would not fit in free memory."""
    need = estimate_capture_bytes(module, batch, height, width)
    free = memory.available_memory(str(device))
    if free is not None and need > 0.8 * free:  # unknown free memory: nothing to compare against
        raise CaptureError(f"A capture at {height} x {width} px needs about {memory.format_bytes(need)}, but only "
                           f"{memory.format_bytes(free)} is free; choose a lower resolution.")


def capture_qk(loaded_or_module, images: torch.Tensor, keep_pre: bool = False) -> QK:
    """Run one forward and keep every layer's post-RoPE q and k (prefix tokens unrotated, as in timm).

    Works for every family in rope_viz.adapters (naver, EVA-02, SBB, PE, DINOv3, Gemma 4, Qwen3, DeepSeek,
    APE-only), classifier wrappers included: the adapter is resolved once; prefix tokens (CLS, registers)
    stay unrotated and patches are rotated with the rotation argument the attention actually receives
    (`rope`, or Gemma 4's rope_cos/rope_sin), in its own pair layout, so a capture inside
    adapters.override_freqs records the overridden rotation. keep_pre also keeps q and k before the
    rotation (QK.q_pre, k_pre), for checks of the rotation itself.
    Shapes: images (B, 3, H, W) already normalised -> QK with q, k (B, L, H, N, D)
    """
    module = adapters.module_of(loaded_or_module)
    resolved = adapters.resolve(module)
    adapter, body = resolved.adapter, resolved.body
    B, _, height, width = images.shape
    ph, pw = adapters.patch_size(body)
    adapters.check_patch_multiple((ph, pw), height, width, CaptureError)
    adapter.check_image_size(body, height, width)
    check_capture_memory(module, B, height, width, images.device)
    npt = adapter.prefix_tokens(body)["total"]
    if isinstance(adapter, TowerAdapter):
        return _capture_tower(module, body, images, npt, keep_pre)
    call = adapter.call  # how each attention receives its rotation and lays out q/k
    owner = threading.get_ident()
    rope_of, qs, ks, pres = {}, {}, {}, {}

    def keep_rope(index):
        def hook(attn, args, kwargs):
            if threading.get_ident() == owner:
                rope_of[index] = call.read(args, kwargs)
        return hook

    def keep(store, index):
        def hook(norm, args, output):
            if threading.get_ident() != owner:
                return  # another session's forward through the shared model
            # rotate exactly as the model's attention does: (B, H, N, D), prefix tokens unrotated
            attn = body.blocks[index].attn
            store[index] = call.rotate(attn, output.detach(), rope_of.get(index)).float()
            if keep_pre:
                pres[(id(store), index)] = call.unrotated(attn, output.detach()).float()
        return hook

    with model_lock(module):
        handles = []
        try:
            for i, block in enumerate(body.blocks):
                attn = block.attn
                if not (hasattr(attn, "q_norm") and hasattr(attn, "k_norm")):
                    raise CaptureError(f"{type(attn).__name__} has no q_norm/k_norm to read q and k from.")
                handles.append(attn.register_forward_pre_hook(keep_rope(i), with_kwargs=True))
                handles.append(attn.q_norm.register_forward_hook(keep(qs, i)))
                handles.append(attn.k_norm.register_forward_hook(keep(ks, i)))
            with torch.inference_mode():
                logits = module(images)
        finally:
            for handle in handles:
                handle.remove()
    depth = len(body.blocks)
    if len(qs) != depth or len(ks) != depth:
        raise CaptureError(f"Captured {len(qs)} of {depth} layers; the model's attention does not call q_norm/k_norm.")
    q = torch.stack([qs[i] for i in range(depth)], dim=1)  # (B, L, H, N, D)
    k = torch.stack([ks[i] for i in range(depth)], dim=1)
    scale = call.scale(body.blocks[0].attn, q.shape[-1])
    pre = {}
    if keep_pre:
        for name, store in (("q_pre", qs), ("k_pre", ks)):
            pre[name] = torch.stack([pres[(id(store), i)] for i in range(depth)], dim=1)
    pairs = adapter.layout(body)[1] if adapter.has_rope else "interleaved"
    return QK(q=q, k=k, grid=(height // ph, width // pw), num_prefix_tokens=npt, scale=scale,
              logits=logits.float(), pairs=pairs, **pre)


def _capture_tower(module, body, images: torch.Tensor, npt: int, keep_pre: bool) -> QK:
    """A Hugging Face tower: q and k recorded at its attention function (rope_viz.measure.tower_capture)."""
    if keep_pre:
        raise CaptureError(f"{body.adapter.label} towers rotate q and k inside their attention; rope-viz records "
                           "them after the rotation only.")
    with model_lock(module):
        got = capture_tower(body, images)
    ph, pw = adapters.patch_size(body)
    return QK(q=got.q, k=got.k, grid=(images.shape[-2] // ph, images.shape[-1] // pw), num_prefix_tokens=npt,
              scale=got.scale, logits=got.features[:, npt:].mean(1), pairs=body.adapter.layout(body)[1],
              segments=got.segments)


def visible(qk: QK, layer: int, rows: slice) -> torch.Tensor | None:
    """Which keys the queries `rows` of `layer` see, or None when they see all. Shapes: -> (rows, N) bool"""
    if qk.segments is None:
        return None
    seg = qk.segments[layer].to(qk.q.device)
    return seg[rows, None] == seg[None, :]


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the keys a query sees (mask from `visible`; None: all). Shapes: logits (..., r, N), mask (r, N)"""
    return (logits if mask is None else logits.masked_fill(~mask, float("-inf"))).softmax(dim=-1)


def check_query(qk: QK, query_index: int) -> None:
    if not 0 <= query_index < qk.num_tokens:
        gh, gw = qk.grid
        raise CaptureError(f"Query token {query_index} is outside 0..{qk.num_tokens - 1} "
                           f"({qk.num_prefix_tokens} prefix tokens + a {gh} x {gw} grid).")


def patch_token(qk: QK, x: int, y: int) -> int:
    """Token index of the patch in column x, row y."""
    gh, gw = qk.grid
    if not (0 <= x < gw and 0 <= y < gh):
        raise CaptureError(f"Patch ({x}, {y}) is outside the {gw} x {gh} grid.")
    return qk.num_prefix_tokens + y * gw + x


def attention_rows(qk: QK, query_index: int) -> torch.Tensor:
    """One query's attention in every layer and head. Shapes: -> (B, L, H, N), rows sum to 1"""
    check_query(qk, query_index)
    q = qk.q[:, :, :, query_index:query_index + 1]  # (B, L, H, 1, D)
    logits = (q * qk.scale) @ qk.k.transpose(-2, -1)  # (B, L, H, 1, N)
    if qk.segments is not None:  # windowed layers: each layer its own visible keys
        seg = qk.segments.to(q.device)  # (L, N)
        mask = (seg[:, query_index:query_index + 1] == seg)[None, :, None, None]  # (1, L, 1, 1, N)
        logits = logits.masked_fill(~mask, float("-inf"))
    return logits.softmax(dim=-1).squeeze(-2)


def _rows(qk: QK, layer: int, start: int, stop: int) -> torch.Tensor:
    """Attention rows start:stop of one layer. Shapes: -> (B, H, stop - start, N)"""
    q = qk.q[:, layer, :, start:stop]  # (B, H, c, D)
    return masked_softmax((q * qk.scale) @ qk.k[:, layer].transpose(-2, -1), visible(qk, layer, slice(start, stop)))


def attention_map(qk: QK, layer: int) -> torch.Tensor:
    """All attention weights of one layer, computed in row chunks. Shapes: -> (B, H, N, N)"""
    if not 0 <= layer < qk.num_layers:
        raise CaptureError(f"Layer {layer} is outside 0..{qk.num_layers - 1}.")
    N = qk.num_tokens
    return torch.cat([_rows(qk, layer, s, min(s + ROW_CHUNK, N)) for s in range(0, N, ROW_CHUNK)], dim=2)


HEAD_FUSIONS = ("mean", "max", "min")


def rollout(qk: QK, head_fusion: str = "mean", layers: int | None = None) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): fuse heads, add the residual identity, renormalise,
    multiply through the layers. Shapes: -> (B, N, N), row i = how token i mixes the input tokens"""
    if head_fusion not in HEAD_FUSIONS:
        raise CaptureError(f"Unknown head fusion {head_fusion!r}; valid: {', '.join(HEAD_FUSIONS)}.")
    B, N = qk.q.shape[0], qk.num_tokens
    eye = torch.eye(N, device=qk.q.device)
    result = eye.expand(B, N, N).clone()
    for layer in range(layers if layers is not None else qk.num_layers):
        attn = attention_map(qk, layer)  # (B, H, N, N); one layer at a time
        fused = {"mean": attn.mean, "max": lambda dim: attn.amax(dim), "min": lambda dim: attn.amin(dim)}[head_fusion](1)
        mixed = 0.5 * fused + 0.5 * eye
        mixed = mixed / mixed.sum(-1, keepdim=True)
        result = mixed @ result
    return result


def patch_distances(grid: tuple[int, int], device=None) -> torch.Tensor:
    """Euclidean distance in patches between every pair of patches. Shapes: -> (P, P), P = gh * gw"""
    pos = rope2d.grid_positions(*grid).to(device)  # (P, 2)
    return torch.cdist(pos, pos)


def mean_attention_distance(qk: QK) -> torch.Tensor:
    """Expected distance (in patches) from a query patch to the patches it attends to, averaged over
    patch queries. Attention to prefix tokens has no position: it is left out and the rest renormalised.
    Shapes: -> (B, L, H)"""
    npt, N = qk.num_prefix_tokens, qk.num_tokens
    pos = rope2d.grid_positions(*qk.grid).to(qk.q.device)  # (P, 2); distances per chunk, never all P x P
    out = []
    for layer in range(qk.num_layers):
        total = 0
        for s in range(npt, N, ROW_CHUNK):
            e = min(s + ROW_CHUNK, N)
            rows = _rows(qk, layer, s, e)[..., npt:]  # (B, H, c, P) patch queries -> patch keys
            rows = rows / rows.sum(-1, keepdim=True)
            dist = torch.cdist(pos[s - npt:e - npt], pos)  # (c, P): at 2048 px a full P x P would be 17 GB
            total = total + (rows * dist).sum(-1).sum(-1)  # (B, H)
        out.append(total / (N - npt))
    return torch.stack(out, dim=1)


def attention_entropy(qk: QK) -> torch.Tensor:
    """Entropy (nats) of patch queries' attention rows over all tokens, averaged. Shapes: -> (B, L, H)"""
    npt, N = qk.num_prefix_tokens, qk.num_tokens
    out = []
    for layer in range(qk.num_layers):
        total = 0
        for s in range(npt, N, ROW_CHUNK):
            rows = _rows(qk, layer, s, min(s + ROW_CHUNK, N))  # (B, H, c, N)
            total = total - (rows * rows.clamp_min(1e-30).log()).sum(-1).sum(-1)
        out.append(total / (N - npt))
    return torch.stack(out, dim=1)


def to_grid(qk: QK, token_values: torch.Tensor) -> torch.Tensor:
    """Drop prefix tokens and fold the patch tokens onto the grid. Shapes: (..., N) -> (..., gh, gw)"""
    gh, gw = qk.grid
    return token_values[..., qk.num_prefix_tokens:].reshape(*token_values.shape[:-1], gh, gw)
