"""Tiny tower cases (see tests/tower_cases.py)."""
from __future__ import annotations

from tower_cases import TowerCase  # noqa: F401

CASES: list = []
