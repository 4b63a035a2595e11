"""The tiny random-weight towers every tower test runs on: one TowerCase per Hugging Face tower adapter.

Each group's cases live in their own file (tower_cases_*.py) so that adding a tower touches one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class TowerCase:
    """key: the adapter's key. build(): a tiny seeded random tower (rope_viz Tower, eval mode). sizes: two image
    sizes (H, W) in px, one non-square (one size where the tower takes only its configured size; the tests
    that use one size take the last). apply_own(x, position_embeddings, layer): the tower's own rotation
    function (its modeling file's apply_rotary_pos_emb*) applied to x (H, T, D) in that layer's internal order.
    save_vlm(path): writes a tiny full VLM with save_pretrained (the tower inside a language model), or None.
    check_prefix: prefix tokens are left unrotated by the tower. window_local: windowed layers rotate by positions
    inside their window (SAM 3), which differ from rope-viz's by a rotation common to each window (cancelling in
    q . k): there the rotation is checked on every q . k within each window instead of q itself."""

    key: str
    build: Callable[[], torch.nn.Module]
    sizes: tuple[tuple[int, int], ...]
    apply_own: Callable
    save_vlm: Callable | None = None
    check_prefix: bool = True
    window_local: bool = False

    def __str__(self) -> str:
        return self.key
