"""The only rope_viz module that imports streamlit: cached wrappers the pages call.

Models are cached once per process and shared by every browser session (read-only);
arrays are cached per primitive key. Pure work stays in the other modules.
"""
from __future__ import annotations

import numpy as np
import pandas  # noqa: F401  (imported up front: a page left mid-import would leave it half-initialised)
import streamlit as st
import torch

from rope_viz import models, rope


def _use_app_navigation() -> None:
    """Make app.py's st.navigation (titles, icons) the app's navigation from the very first run.

    Streamlit 1.67 treats a `pages/` folder beside app.py as an old-style multipage app, listing
    raw file names, until app.py's st.navigation has run once; a first visit to a deep link such
    as /frequencies never runs app.py. Every page imports this module, so switching that mode off
    here and rerunning once gives the titled navigation everywhere (checked by test_browser.py).
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_use_app_navigation()


@st.cache_resource(show_spinner="Loading model…", max_entries=6)
def get_model(name: str, device: str) -> models.LoadedModel:
    """One shared, eval-mode instance per (model, device). Raises ModelLoadError."""
    return models.load_model(name, device=device)


@st.cache_data(ttl=60, show_spinner=False)
def get_available_models() -> list[models.ModelSpec]:
    """Models whose weights are on this machine (re-checked every minute)."""
    return models.available_models()


@st.cache_data(ttl=60, show_spinner=False)
def get_all_models() -> list[models.ModelSpec]:
    return models.list_models()


def get_device() -> str:
    return models.default_device()


@st.cache_data(show_spinner=False, max_entries=32)
def get_model_freqs(name: str) -> np.ndarray | None:
    """The model's freqs (L, H, D/2, 2) as numpy, or None for APE-only models."""
    freqs = rope.model_freqs(get_model(name, get_device()).module)
    return None if freqs is None else freqs.numpy()


@st.cache_data(show_spinner=False, max_entries=64)
def get_theory_freqs(kind: str, head_dim: int, theta: float, num_heads: int, seed: int) -> np.ndarray:
    """Theory-mode freqs (1, H, D/2, 2): axial (same for every head) or the mixed initialisation."""
    if kind == "axial":
        return rope.axial_freqs(head_dim, theta).expand(1, num_heads, -1, -1).numpy().copy()
    return rope.mixed_freqs(head_dim, num_heads, theta=theta, seed=seed).numpy()


@st.cache_data(show_spinner=False, max_entries=128)
def get_kernel(freqs_head: np.ndarray, h: int, w: int, qx: int, qy: int) -> np.ndarray:
    """Similarity kernel (h, w) of one head's freqs (D/2, 2) around query (qx, qy)."""
    return rope.similarity_kernel(torch.from_numpy(freqs_head), h, w, (qx, qy)).numpy()


@st.cache_data(show_spinner=False, max_entries=64)
def get_spectrum(freqs_head: np.ndarray, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(omega (S,), power (S, S)) of one head's similarity kernel."""
    omega, power = rope.compute_spectrum(torch.from_numpy(freqs_head), size)
    return omega.numpy(), power.numpy()


@st.cache_data(show_spinner=False, max_entries=64)
def get_phase_map(freqs_head: np.ndarray, pair: int, h: int, w: int) -> np.ndarray:
    """cos(w_j . p) over an h x w grid for pair j. Shapes: -> (h, w)"""
    f = torch.from_numpy(freqs_head)[pair:pair + 1]  # (1, 2)
    return torch.cos(rope.angles(f, rope.grid_positions(h, w)))[:, 0].reshape(h, w).numpy()
