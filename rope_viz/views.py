"""What the pages show, decided from primitives: the small `if`s about the math live here."""
from __future__ import annotations

import numpy as np

from rope_viz import families, rope
from rope_viz.errors import InputError

THEORY_AXIAL_THETA = 100.0  # naver RoPE-Axial
THEORY_MIXED_THETA = 10.0  # naver RoPE-Mixed initialisation


def axial_vs_mixed(family_key: str, freqs: np.ndarray, seed: int = 0, label: str = "") -> dict[str, np.ndarray]:
    """Pair a model's freqs with the other RoPE kind at the same size, for side-by-side views.

    Decided by the model's family (rope_viz.families), not by its name: a model with fixed axial
    frequencies (naver RoPE-Axial, EVA-02, SBB, PE, DINOv3) is shown beside the mixed initialisation it
    could have had, a learned mixed model beside the axial frequencies of the same head_dim.
    Shapes: freqs (L, H, D/2, 2) -> same per entry
    """
    family = families.get_family(family_key)
    if not family.has_rope:
        raise families.FamilyError(f"{family.label} models have no rotary frequencies.")
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
    family = families.get_family(family_key)
    return {"label": family.label, "learned": family.learned, "grid_dependent": family.grid_dependent,
            "about": family.about}


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


def attention_panels(qk, view: str, layer: int, head: int, query_xy: tuple[int, int],
                     fusion: str = "mean") -> dict[str, np.ndarray]:
    """The maps an attention view draws, each folded onto the patch grid.

    Models without a CLS token show the query patch's row for "cls" and "rollout".
    Shapes: -> {panel label: (gh, gw)} for the first image of the batch
    """
    from rope_viz import capture

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


def to_csv(rows: list[dict], columns=None) -> str:
    """Rows as CSV text; columns default to the first row's keys, extra keys are left out."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns or rows[0]), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def top_k(logits, class_names, k: int = 5) -> list[dict]:
    """The k most probable classes. Shapes: logits (C,) -> [{rank, class, probability %}]"""
    import torch

    probs = torch.as_tensor(logits).float().softmax(-1)
    values, indices = probs.topk(min(k, probs.numel()))
    return [{"rank": r + 1, "class": class_names[i], "probability %": round(100 * float(v), 2)}
            for r, (v, i) in enumerate(zip(values.tolist(), indices.tolist()))]
