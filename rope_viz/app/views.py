"""What the pages show, decided from primitives: the small `if`s about the math live here."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from rope_viz import rope
from rope_viz import adapters
from rope_viz.measure import capture, positions
from rope_viz.measure.tables import to_csv  # noqa: F401  (pages call views.to_csv)
from rope_viz.runtime import memory
from rope_viz.errors import InputError

THEORY_AXIAL_THETA = 100.0  # naver RoPE-Axial
THEORY_MIXED_THETA = 10.0  # naver RoPE-Mixed initialisation


def axial_vs_mixed(family_key: str, freqs: np.ndarray, seed: int = 0, label: str = "") -> dict[str, np.ndarray]:
    """Pair a model's freqs with the other RoPE kind at the same size, for side-by-side views.

    Decided by the model's family (rope_viz.adapters), not by its name: a model with fixed axial
    frequencies (naver RoPE-Axial, EVA-02, SBB, PE, DINOv3) is shown beside the mixed initialisation it
    could have had, a learned mixed model beside the axial frequencies of the same head_dim.
    Shapes: freqs (L, H, D/2, 2) -> same per entry
    """
    family = adapters.get_family(family_key)
    if not family.has_rope:
        raise adapters.FamilyError(f"{family.label} models have no rotary frequencies.")
    L, H, half, _ = freqs.shape
    head_dim = 2 * half
    name = label or family.label
    if family.learned:
        other = rope.axial_freqs(head_dim, THEORY_AXIAL_THETA).expand(L, H, -1, -1).numpy().copy()
        return {"RoPE-Axial (theory)": other, f"{name} (this model, learned)": freqs}
    other = rope.mixed_freqs(head_dim, H, theta=THEORY_MIXED_THETA, seed=seed, depth=L).numpy()
    return {f"{name} (this model)": freqs, "RoPE-Mixed (initialisation, theory)": other}


def family_facts(family_key: str) -> dict:
    """What the pages need to know about a family: {label, learned, grid_dependent, about}."""
    family = adapters.get_family(family_key)
    return {"label": family.label, "learned": family.learned, "grid_dependent": family.grid_dependent,
            "about": family.about}


def theory_freqs(kind: str, head_dim: int, theta: float, num_heads: int, seed: int = 0) -> np.ndarray:
    """Theory-mode freqs: "axial" (the same for every head) or "mixed" (the random initialisation).

    Shapes: -> (1, H, D/2, 2)
    """
    if kind == "axial":
        return rope.axial_freqs(head_dim, theta).expand(1, num_heads, -1, -1).numpy().copy()
    if kind == "mixed":
        return rope.mixed_freqs(head_dim, num_heads, theta=theta, seed=seed).numpy()
    raise ValueError(f"Unknown theory kind {kind!r}; valid: axial, mixed.")


def phase_map(freqs_head: np.ndarray, pair: int, h: int, w: int) -> np.ndarray:
    """cos(w_j . p) over an h x w grid for pair j of one head. Shapes: freqs_head (D/2, 2) -> (h, w)"""
    f = torch.from_numpy(np.ascontiguousarray(freqs_head))[pair:pair + 1]  # (1, 2)
    return torch.cos(rope.angles(f, rope.grid_positions(h, w)))[:, 0].reshape(h, w).numpy()


def kernel(freqs_head: np.ndarray, h: int, w: int, query_xy: tuple[int, int]) -> np.ndarray:
    """rope.similarity_kernel on numpy. Shapes: freqs_head (D/2, 2) -> (h, w)"""
    return rope.similarity_kernel(torch.from_numpy(np.ascontiguousarray(freqs_head)), h, w, query_xy).numpy()


def spectrum(freqs_head: np.ndarray, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """rope.compute_spectrum on numpy. Shapes: freqs_head (D/2, 2) -> omega (S,), power (S, S)"""
    omega, power = rope.compute_spectrum(torch.from_numpy(np.ascontiguousarray(freqs_head)), size)
    return omega.numpy(), power.numpy()


def frequency_summary(freqs: np.ndarray) -> dict[str, np.ndarray]:
    """Per layer and head: mean |w| (rad/patch) and the spread of directions (circular std, degrees).

    Directions are taken modulo 180° (w and -w are the same frequency). Shapes: (L, H, D/2, 2) -> (L, H) each
    """
    mag = np.hypot(freqs[..., 0], freqs[..., 1])  # (L, H, D/2)
    doubled = 2 * np.arctan2(freqs[..., 1], freqs[..., 0])  # axial-symmetric: double the angle
    resultant = np.abs(np.mean(np.exp(1j * doubled), axis=-1))  # (L, H) in [0, 1]
    spread = np.degrees(np.sqrt(-2 * np.log(np.clip(resultant, 1e-12, 1.0))) / 2)
    return {"mean_magnitude": mag.mean(-1), "direction_spread": spread}


# ---------------------------------------------------------------- attention

ATTENTION_VIEWS = {
    "query": "Query patch: one head",
    "heads": "Query patch: every head of the layer",
    "mean": "Query patch: mean over heads",
    "cls": "CLS token: one head",
    "rollout": "Rollout (CLS, all layers)",
}


def windowed_layers(qk) -> list[int]:
    """Layers whose queries see only their window (more than one segment). Shapes: qk.segments (L, N) or None"""
    if qk.segments is None:
        return []
    return [layer for layer in range(qk.num_layers) if int(qk.segments[layer].max()) > 0]


def window_note(label: str, qk) -> str | None:
    """One sentence naming a tower's windowed and full-attention layers, or None when every layer is full."""
    windowed = windowed_layers(qk)
    if not windowed:
        return None
    full = [layer for layer in range(qk.num_layers) if layer not in windowed]
    return (f"{label}: layers {', '.join(map(str, windowed))} attend within windows (a query's map holds exactly "
            f"the keys of its window, zero elsewhere); layers {', '.join(map(str, full)) or 'none'} see every patch. "
            "Rollout needs every layer to see every patch, so it is not offered.")


def attention_views(qks) -> list[str]:
    """The views a set of captures can show: rollout only where every layer of every model is full attention."""
    return [v for v in ATTENTION_VIEWS if v != "rollout" or not any(windowed_layers(qk) for qk in qks)]


def capture_bytes(loaded, resolution: int, batch: int = 1) -> int:
    """Bytes a kept capture of a square image holds (its q and k, fp32)."""
    s = capture.sizes_of(loaded, resolution, resolution, loaded.spec.patch_size)
    return memory.qk_bytes(batch, s.depth, s.tokens, s.width)


def capture_image(loaded, pixels: np.ndarray, method: str = "native") -> capture.QK:
    """One forward of a model on one image under a position method (rope_viz.positions; the calling
    thread only), keeping q, k and the logits on the CPU (to be cached and shared).

    Shapes: pixels (R, R, 3) uint8 -> QK with q, k (1, L, H, N, D), logits (1, C)
    """
    x = loaded.normalise(torch.tensor(pixels).permute(2, 0, 1)[None])  # (1, 3, R, R)
    patch = loaded.spec.patch_size
    grid = (pixels.shape[0] // patch, pixels.shape[1] // patch)
    train = loaded.spec.train_res // patch
    with memory.out_of_memory_as_error(f"Capturing {loaded.spec.name} at {pixels.shape[0]} px"), \
            positions.apply_method(loaded.module, method, grid, (train, train)):
        qk = capture.capture_qk(loaded, x)
    return dataclasses.replace(qk, q=qk.q.cpu(), k=qk.k.cpu(), logits=qk.logits.cpu())  # segments etc. kept


def attention_stats(qk) -> dict[str, np.ndarray]:
    """Mean attention distance (patches) and entropy (nats) per layer and head. Shapes: -> (L, H) each"""
    return {"distance": capture.mean_attention_distance(qk)[0].numpy(),
            "entropy": capture.attention_entropy(qk)[0].numpy()}


def attention_panels(qk, view: str, layer: int, head: int, query_xy: tuple[int, int],
                     fusion: str = "mean") -> dict[str, np.ndarray]:
    """The maps an attention view draws, each folded onto the patch grid.

    Models without a CLS token show the query patch's row for "cls" and "rollout".
    Shapes: -> {panel label: (gh, gw)} for the first image of the batch
    """
    if view not in ATTENTION_VIEWS:
        raise InputError(f"Unknown attention view {view!r}; valid: {', '.join(ATTENTION_VIEWS)}.")
    query = capture.patch_token(qk, *query_xy)
    source = 0 if qk.num_prefix_tokens and view in ("cls", "rollout") else query
    if view == "rollout":
        row = capture.rollout(qk, fusion)[0, source]  # (N,)
        return {f"rollout ({fusion} over heads)": capture.to_grid(qk, row).numpy()}
    rows = capture.attention_rows(qk, source)[0, layer]  # (H, N)
    grids = capture.to_grid(qk, rows).numpy()  # (H, gh, gw)
    if view == "heads":
        return {f"head {h}": grids[h] for h in range(len(grids))}
    if view == "mean":
        return {"mean over heads": grids.mean(0)}
    return {f"head {head}": grids[head]}


def top_k(logits, class_names, k: int = 5) -> list[dict]:
    """The k most probable classes. Shapes: logits (C,) -> [{rank, class, probability %}]"""
    probs = torch.as_tensor(logits).float().softmax(-1)
    values, indices = probs.topk(min(k, probs.numel()))
    return [{"rank": r + 1, "class": class_names[i], "probability %": round(100 * float(v), 2)}
            for r, (v, i) in enumerate(zip(values.tolist(), indices.tolist()))]


def port_notes(specs) -> list[str]:
    """'<model>: <sentence>' for every spec whose family's timm port differs from its original code."""
    notes = []
    for spec in specs:
        adapter = adapters.get_adapter(spec.family)
        if adapter.port_note:
            notes.append(f"{spec.name}: {adapter.port_note}")
    return notes


def family_rows() -> list[dict]:
    """One row per registered model family (rope_viz.adapters.ADAPTERS), for Home's table."""
    return [{"family": a.label, "key": a.key, "library": a.library, "positions": a.about,
             "rad/patch depends on the grid": "yes" if a.grid_dependent else "no",
             "timm port vs original": a.port_note or "same" if a.library == "timm" else "- (the original's own code)"}
            for a in adapters.ADAPTERS]
