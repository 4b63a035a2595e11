"""Hugging Face transformers vision towers as rope-viz families: one adapter file per tower.

`Tower` (tower.py) gives a transformers vision model timm's face; `TowerAdapter` (base.py) is what each
tower's file answers; `record` captures q and k at transformers' attention function. The tower files are
listed in rope_viz.adapters.registry.ADAPTERS, before the timm families.
"""
from __future__ import annotations

from rope_viz.adapters.towers.base import TowerAdapter, TowerCall, hf_modeling
from rope_viz.adapters.towers.tower import Tower

__all__ = ["Tower", "TowerAdapter", "TowerCall", "hf_modeling"]
