"""The only rope_viz module that imports streamlit: cached wrappers the pages call.

Models are cached once per process and shared by every browser session (read-only); small
arrays per primitive key (st.cache_data); images, captures and attributions in the one
byte-bounded cache of rope_viz.runtime.memory. Every computation lives in the library modules.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas  # noqa: F401  (imported up front: a page left mid-import would leave it half-initialised)
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from rope_viz import models, rope
from rope_viz.app import anatomy_views, explorer, standalone, views
from rope_viz.measure import attribution, collapse, features, positions
from rope_viz.runtime import memory
from rope_viz.scenes import data

FRONTEND = Path(__file__).resolve().parent / "frontend"


def use_app_navigation() -> None:
    """Make app.py's st.navigation (titles, icons) the app's navigation from the very first run.

    Streamlit 1.67 treats a `pages/` folder beside app.py as an old-style multipage app, listing
    raw file names, until app.py's st.navigation has run once; a first visit to a deep link such
    as /frequencies never runs app.py. Every page calls this first, so switching that mode off and
    rerunning once gives the titled navigation everywhere (checked by test_browser.py).
    Called by the pages, never at import: st.rerun() raises, and a module whose import raises while
    another session imports it at once hands that session a half-made module (ImportError: cannot
    import name 'shared' from 'pages'), which the eight-session load test hit.
    """
    global _rerun_for_navigation
    if _rerun_for_navigation:
        _rerun_for_navigation = False  # once per process
        st.rerun()


# Decided at import, as the old-style mode can only be on then (a first visit that never ran app.py); the
# rerun itself waits for the page's call. Imported outside a server run (tests, AppTest) this does nothing.
_rerun_for_navigation = bool(PagesManager.uses_pages_directory)
PagesManager.uses_pages_directory = False if _rerun_for_navigation else PagesManager.uses_pages_directory


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
def get_model_freqs(name: str, gh: int | None = None, gw: int | None = None) -> np.ndarray | None:
    """The model's freqs (L, H, D/2, 2) in rad/patch for a gh x gw grid (default: its training grid) as
    numpy, or None for APE-only models."""
    freqs = rope.model_freqs(get_model(name, get_device()).module, None if gh is None else (gh, gw))
    return None if freqs is None else freqs.numpy()


@st.cache_data(show_spinner=False, max_entries=64)
def get_theory_freqs(kind: str, head_dim: int, theta: float, num_heads: int, seed: int) -> np.ndarray:
    """Theory-mode freqs (1, H, D/2, 2): axial (same for every head) or the mixed initialisation."""
    return views.theory_freqs(kind, head_dim, theta, num_heads, seed)


@st.cache_data(show_spinner=False, max_entries=128)
def get_kernel(freqs_head: np.ndarray, h: int, w: int, qx: int, qy: int) -> np.ndarray:
    """Similarity kernel (h, w) of one head's freqs (D/2, 2) around query (qx, qy)."""
    return views.kernel(freqs_head, h, w, (qx, qy))


@st.cache_data(show_spinner=False, max_entries=64)
def get_spectrum(freqs_head: np.ndarray, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(omega (S,), power (S, S)) of one head's similarity kernel."""
    return views.spectrum(freqs_head, size)


@st.cache_data(show_spinner=False, max_entries=64)
def get_phase_map(freqs_head: np.ndarray, pair: int, h: int, w: int) -> np.ndarray:
    """cos(w_j . p) over an h x w grid for pair j. Shapes: -> (h, w)"""
    return views.phase_map(freqs_head, pair, h, w)


# ---------------------------------------------------------------- the byte-bounded shared cache
# Images, captures and attributions can be large (one ViT-L capture at 2048 px is about 3 GB), so they
# live in memory.shared_cache(): one byte budget for the process, shared read-only by every session.

def _shared(key: tuple, compute, spinner: str | None = None, estimate: int | None = None, what: str = "This"):
    """The cached value of key, computed once (with a spinner) when missing; running out of memory
    empties the caches and becomes one sentence (memory.OutOfMemory)."""
    def run():
        with memory.out_of_memory_as_error(what):
            if spinner is None:
                return compute()
            with st.spinner(spinner):
                return compute()
    return memory.shared_cache().get_or_compute(key, run, estimate=estimate, what=what)


def get_input_image(source: str, value: str, resolution: int, raw: bytes | None = None,
                    aspect_step: int = 0) -> np.ndarray:
    """The image a model sees, uint8 (R, R, 3), or (h, w, 3) with its aspect kept (aspect_step), read-only
    (see data.input_image). Raises ImageError."""
    content = data.pixels_key(np.frombuffer(raw, np.uint8)) if raw else ""
    return _shared(("image", source, value, resolution, content, aspect_step),
                   lambda: data.input_image(source, value, resolution, raw, aspect_step))


def get_capture(name: str, device: str, pixels_key: str, pixels: np.ndarray, method: str = "native"):
    """(QK, logits (C,)) for one model and image under a position method (rope_viz.positions): one forward,
    shared read-only by every session."""
    loaded = get_model(name, device)
    qk = _shared(("capture", name, device, pixels_key, method), lambda: views.capture_image(loaded, pixels, method),
                 spinner="Running the model and keeping q and k…", estimate=views.capture_bytes(loaded, len(pixels)),
                 what=f"A capture of {name} at {len(pixels)} px")
    return qk, qk.logits[0]


def get_attention_panels(name: str, device: str, key: str, pixels: np.ndarray, view: str, layer: int, head: int,
                         qx: int, qy: int, fusion: str, method: str = "native") -> dict[str, np.ndarray]:
    qk, _ = get_capture(name, device, key, pixels, method)
    return _shared(("panels", name, device, key, view, layer, head, qx, qy, fusion, method),
                   lambda: views.attention_panels(qk, view, layer, head, (qx, qy), fusion),
                   what=f"The attention maps of {name}")


def get_attention_stats(name: str, device: str, key: str, pixels: np.ndarray,
                        method: str = "native") -> dict[str, np.ndarray]:
    """Mean attention distance (patches) and entropy (nats) per layer and head. Shapes: (L, H) each"""
    qk, _ = get_capture(name, device, key, pixels, method)
    return _shared(("stats", name, device, key, method), lambda: views.attention_stats(qk),
                   spinner="Computing attention distance and entropy…", what=f"The attention statistics of {name}")


# ---------------------------------------------------------------- sweeps

@st.cache_resource
def get_sweep_cells() -> dict:
    """Finished sweep cells for this process, keyed by sweep.cell_key: shared, so a revisit is instant."""
    return {}


@st.cache_resource
def get_attention_results() -> dict:
    """Finished attention-statistics sweeps, keyed by (models, resolutions, dataset, images)."""
    return {}


@st.cache_data(show_spinner=False, max_entries=8)
def get_canvas_collapse(names: tuple[str, ...], device: str, resolution: int, limit: int) -> list[dict]:
    """collapse.collapse_rows for bundled models: top-1 on the canvas under each change (private copies, no hooks
    on the shared models)."""
    return collapse.collapse_rows([get_model(n, device) for n in names], resolution, limit)


def load_shared(name: str, device: str) -> models.LoadedModel:
    """The shared cached model (sweeps never change it: interpolation works on a private copy)."""
    return get_model(name, device)


# ---------------------------------------------------------------- attribution

def get_random_model(name: str, device: str) -> models.LoadedModel:
    """The same architecture with random weights (model-randomisation sanity check)."""
    loaded = get_model(name, device)
    return _shared(("random model", name, device), lambda: attribution.randomized_model(loaded),
                   what=f"A randomly initialised {name}")


def get_attribution(name: str, device: str, key: str, pixels: np.ndarray, method: str, target: int | None,
                    steps: int | None, block: int, randomized: bool) -> dict:
    """{map (h, w) numpy, target, predicted, probability, delta, logit_gap, steps, capped} for one model
    and image (attribution.explain); steps None lets IG choose them."""
    loaded = get_random_model(name, device) if randomized else get_model(name, device)
    return _shared(("attribution", name, device, key, method, target, steps, block, randomized),
                   lambda: attribution.explain(loaded, pixels, method, target, steps, block),
                   spinner="Computing the attribution…", what=f"The attribution of {name}")


# ---------------------------------------------------------------- browser components (rope_viz/app/frontend)

_explorer = st.components.v2.component(
    "rope_viz.attention_explorer", html=(FRONTEND / "explorer.html").read_text(),
    css=(FRONTEND / "explorer.css").read_text(), js=(FRONTEND / "explorer.js").read_text())
_copy_link = st.components.v2.component(
    "rope_viz.copy_link", html=(FRONTEND / "copylink.html").read_text(),
    css=(FRONTEND / "copylink.css").read_text(), js=(FRONTEND / "copylink.js").read_text())


def get_explorer_payload(names: list[str], labels: list[str], device: str, key: str, pixels: np.ndarray, layer: int,
                         patch: int, state: dict, method: str = "native") -> bytes:
    """The explorer's bytes: the image and `layer`'s q and k of each model under a position method
    (already captured, shared)."""
    captures = {label: get_capture(name, device, key, pixels, method)[0] for name, label in zip(names, labels)}
    payload_id = f"{key}|{'|'.join(names)}|{layer}|{method}"
    return explorer.pack(captures, layer, pixels, patch, {**state, "payload_id": payload_id})


def get_explorer_html(names: list[str], labels: list[str], device: str, key: str, pixels: np.ndarray,
                      layers: list[int], patch: int, state: dict, title: str, method: str = "native",
                      heads: list[int] | None = None) -> str:
    """The explorer as one self-contained HTML page (rope_viz.app.standalone) holding `layers` (one payload
    each: with every head, the same bytes the page's explorer gets; else only `heads`): its size is what
    the chosen layers and heads cost."""
    if heads is None:
        return standalone.explorer_html({f"layer {layer}": get_explorer_payload(
            names, labels, device, key, pixels, layer, patch, state, method) for layer in layers}, title)
    captures = {label: get_capture(name, device, key, pixels, method)[0] for name, label in zip(names, labels)}
    state = {**state, "payload_id": f"{key}|{'|'.join(names)}|{method}"}
    return standalone.explorer_html(standalone.layer_payloads(captures, layers, pixels, patch, state, heads=heads),
                                    title)


def show_explorer(payload: bytes, key: str, on_pin) -> None:
    """Mount the attention explorer; `on_pin(x, y)` runs (as a callback, before the rerun) when a patch is clicked."""
    def pinned():
        value = (st.session_state.get(key) or {}).get("pinned")
        if value:
            on_pin(int(value["x"]), int(value["y"]))

    _explorer(data=payload, key=key, on_pinned_change=pinned, height="content")


def show_copy_link(key: str = "copy_link") -> None:
    """A button that copies the page's URL (its query string holds the view) to the clipboard."""
    _copy_link(key=key, height="content")

# ---------------------------------------------------------------- features

def get_patch_features(name: str, device: str, key: str, pixels: np.ndarray) -> np.ndarray:
    """Last-layer patch features of one model on one image. Shapes: -> (gh, gw, C) float32"""
    loaded = get_model(name, device)
    return _shared(("patch features", name, device, key), lambda: features.image_patch_features(loaded, pixels),
                   spinner="Computing patch features…", what=f"The patch features of {name}")


@st.cache_data(show_spinner=False, max_entries=32)
def get_pca_maps(name: str, device: str, keys: tuple[str, ...], _pixels: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """PCA colour maps of one model at several resolutions with ONE basis fitted on all of them.

    Shapes: -> [(gh_r, gw_r, 3) float in [0, 1]] in the order of `keys`
    """
    return features.pca_maps([get_patch_features(name, device, k, p) for k, p in zip(keys, _pixels)])


@st.cache_data(show_spinner=False, max_entries=256)
def get_patch_similarity(name: str, device: str, key: str, _pixels: np.ndarray, qx: int, qy: int) -> np.ndarray:
    """Cosine similarity of patch (qx, qy) to every patch. Shapes: -> (gh, gw)"""
    return features.similarity_map(get_patch_features(name, device, key, _pixels), (qx, qy))


@st.cache_data(show_spinner="Measuring feature stability…", max_entries=16)
def get_stability(names: tuple[str, ...], resolutions: tuple[int, ...], n_images: int, mode: str,
                  device: str) -> list[dict]:
    """Feature stability rows (see features.stability_sweep) for every model x resolution."""
    return features.stability_sweep(list(names), list(resolutions), n_images, mode, device, load=load_shared)


# ---------------------------------------------------------------- position methods

@st.cache_data(show_spinner=False, max_entries=256)
def get_method_freqs(freqs_head: np.ndarray, method: str, grid: tuple[int, int], train_grid: tuple[int, int],
                     native_head: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(freqs (D/2, 2) on `grid`, logit scale) of one head's training-grid freqs under a position method
    (`native_head`: the head's own vectors on `grid`, for methods that start from them)."""
    return positions.method_head_freqs(freqs_head, method, grid, train_grid, native_head)


# ---------------------------------------------------------------- anatomy (rope_viz.anatomy on one model and image)

@st.cache_data(show_spinner=False, max_entries=64)
def get_run_freqs(name: str, device: str, gh: int, gw: int, method: str = "native"):
    """(freqs (L, H, D/2, 2) rad/patch, positions (gh * gw, 2)) a capture on a gh x gw grid under `method` is
    rotated with; (None, None) for APE-only models."""
    return anatomy_views.run_freqs(get_model(name, device), (gh, gw), method)


def get_logit_pairs(name: str, device: str, key: str, pixels: np.ndarray, method: str, layer: int, head: int,
                    query: int, key_token: int) -> dict:
    """One logit of the capture pair by pair (anatomy_views.logit_pairs_view); query and key_token are token
    indices (prefix tokens first). A RoPE model only."""
    qk, _ = get_capture(name, device, key, pixels, method)
    freqs, positions_ = get_run_freqs(name, device, *qk.grid, method)
    return _shared(("logit pairs", name, device, key, method, layer, head, query, key_token),
                   lambda: anatomy_views.logit_pairs_view(qk, freqs, positions_, layer, head, query, key_token),
                   what=f"One logit of {name}")


def get_frequency_usage(name: str, device: str, key: str, pixels: np.ndarray, method: str = "native") -> dict:
    """Usage per layer, head and pair and each head's kind (anatomy_views.usage_view). A RoPE model only."""
    qk, _ = get_capture(name, device, key, pixels, method)
    freqs, _ = get_run_freqs(name, device, *qk.grid, method)
    return _shared(("frequency usage", name, device, key, method), lambda: anatomy_views.usage_view(qk, freqs),
                   what=f"The frequency usage of {name}")


@st.cache_data(show_spinner="Checking the model's RoPE…", max_entries=32)
def get_self_check(name: str, device: str) -> dict:
    """anatomy.self_check of one model as {ok, message, rows}: the same for every image and method."""
    return anatomy_views.self_check_view(get_model(name, device))


def get_token_norms(name: str, device: str, key: str, pixels: np.ndarray, method: str = "native") -> np.ndarray:
    """Every block's output-token norms on one image under a method. Shapes: -> (L, N) prefix tokens first"""
    loaded = get_model(name, device)
    return _shared(("token norms", name, device, key, method), lambda: anatomy_views.token_norms(loaded, pixels, method),
                   spinner="Measuring token norms…", what=f"The token norms of {name}")


def get_attention_received(name: str, device: str, key: str, pixels: np.ndarray, method: str, layer: int) -> np.ndarray:
    """The attention each token receives in `layer`, mean over heads and queries. Shapes: -> (N,)"""
    qk, _ = get_capture(name, device, key, pixels, method)
    return _shared(("attention received", name, device, key, method, layer),
                   lambda: anatomy_views.attention_received(qk, layer), what=f"The attention {name} receives")


def get_head_grid(name: str, device: str, key: str, pixels: np.ndarray, method: str, qx: int, qy: int) -> np.ndarray:
    """Query patch (qx, qy)'s attention map in every layer and head. Shapes: -> (L, H, gh, gw)"""
    qk, _ = get_capture(name, device, key, pixels, method)
    return _shared(("head grid", name, device, key, method, qx, qy), lambda: anatomy_views.head_grid(qk, (qx, qy)),
                   what=f"The attention maps of every head of {name}")
