"""What the pages show, decided from primitives: the small `if`s about the math live here."""
from __future__ import annotations

import numpy as np

from rope_viz import rope

THEORY_AXIAL_THETA = 100.0  # naver RoPE-Axial
THEORY_MIXED_THETA = 10.0  # naver RoPE-Mixed initialisation


def axial_vs_mixed(pos: str, freqs: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Pair a model's freqs with the other RoPE kind at the same size, for side-by-side views.

    An axial model is shown beside the mixed initialisation it could have had, a mixed model
    beside the axial frequencies of the same head_dim. Shapes: freqs (L, H, D/2, 2) -> same per entry
    """
    L, H, half, _ = freqs.shape
    head_dim = 2 * half
    if pos.startswith("rope_axial"):
        other = rope.mixed_freqs(head_dim, H, theta=THEORY_MIXED_THETA, seed=seed, depth=L).numpy()
        return {"RoPE-Axial (this model)": freqs, "RoPE-Mixed (initialisation, theory)": other}
    if pos.startswith("rope_mixed"):
        other = rope.axial_freqs(head_dim, THEORY_AXIAL_THETA).expand(L, H, -1, -1).numpy().copy()
        return {"RoPE-Axial (theory)": other, "RoPE-Mixed (this model, learned)": freqs}
    raise ValueError(f"Position kind {pos!r} has no rotary frequencies.")


def frequency_summary(freqs: np.ndarray) -> dict[str, np.ndarray]:
    """Per layer and head: mean |w| (rad/patch) and the spread of directions (circular std, degrees).

    Directions are taken modulo 180° (w and -w are the same frequency). Shapes: (L, H, D/2, 2) -> (L, H) each
    """
    mag = np.hypot(freqs[..., 0], freqs[..., 1])  # (L, H, D/2)
    doubled = 2 * np.arctan2(freqs[..., 1], freqs[..., 0])  # axial-symmetric: double the angle
    resultant = np.abs(np.mean(np.exp(1j * doubled), axis=-1))  # (L, H) in [0, 1]
    spread = np.degrees(np.sqrt(-2 * np.log(np.clip(resultant, 1e-12, 1.0))) / 2)
    return {"mean_magnitude": mag.mean(-1), "direction_spread": spread}
