"""The only rope_viz module that imports streamlit: cached wrappers the pages call.

Models are cached once per process and shared by every browser session (read-only);
arrays are cached per primitive key. Pure work stays in the other modules.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas  # noqa: F401  (imported up front: a page left mid-import would leave it half-initialised)
import streamlit as st
import torch

from rope_viz import explorer, models, rope

FRONTEND = Path(__file__).resolve().parent / "frontend"


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
def get_model_freqs(name: str, gh: int | None = None, gw: int | None = None) -> np.ndarray | None:
    """The model's freqs (L, H, D/2, 2) in rad/patch for a gh x gw grid (default: its training grid) as
    numpy, or None for APE-only models."""
    freqs = rope.model_freqs(get_model(name, get_device()).module, None if gh is None else (gh, gw))
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


# ---------------------------------------------------------------- attention

@st.cache_data(show_spinner=False, max_entries=64)
def get_input_image(source: str, value: str, resolution: int, raw: bytes | None = None) -> np.ndarray:
    """The image a model sees, as uint8 (R, R, 3): a scene rendered at R ("scene", "seed:mode"),
    or a file resized and centre-cropped ("sample" path, "upload" name + raw bytes). Raises ImageError."""
    from rope_viz import data

    if source == "scene":
        seed, mode = value.split(":")
        image, _ = data.render_scene(int(seed), resolution, mode)
    elif source == "sample":
        image = data.load_image(open(value, "rb").read(), value.rsplit("/", 1)[-1])
    else:
        image = data.load_image(raw or b"", value)
    pixels = data.resize_center_crop(image, resolution)  # (3, R, R) in [0, 1]; identity for a scene at R
    return (pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@st.cache_resource(show_spinner="Running the model and keeping q and k…", max_entries=8)
def get_capture(name: str, device: str, pixels_key: str, _pixels: np.ndarray, method: str = "extrapolate"):
    """(QK, logits (C,)) for one model and image under a position method (rope_viz.positions):
    one forward, shared read-only by every session."""
    from rope_viz import capture, positions

    loaded = get_model(name, device)
    grid = (_pixels.shape[0] // loaded.spec.patch_size, _pixels.shape[1] // loaded.spec.patch_size)
    train = loaded.spec.train_res // loaded.spec.patch_size
    with positions.apply_method(loaded.module, method, grid, (train, train)):
        qk = capture.capture_qk(loaded, loaded.normalise(torch.from_numpy(_pixels).permute(2, 0, 1)[None]))
    return capture.QK(q=qk.q.cpu(), k=qk.k.cpu(), grid=qk.grid, num_prefix_tokens=qk.num_prefix_tokens,
                      scale=qk.scale), qk.logits[0].cpu()


def pixels_key(pixels: np.ndarray) -> str:
    import hashlib

    return f"{pixels.shape}:{hashlib.sha1(pixels.tobytes()).hexdigest()}"


@st.cache_data(show_spinner=False, max_entries=256)
def get_attention_panels(name: str, device: str, key: str, _pixels: np.ndarray, view: str, layer: int, head: int,
                         qx: int, qy: int, fusion: str, method: str = "extrapolate") -> dict[str, np.ndarray]:
    from rope_viz import views

    qk, _ = get_capture(name, device, key, _pixels, method)
    return views.attention_panels(qk, view, layer, head, (qx, qy), fusion)


@st.cache_data(show_spinner="Computing attention distance and entropy…", max_entries=32)
def get_attention_stats(name: str, device: str, key: str, _pixels: np.ndarray,
                        method: str = "extrapolate") -> dict[str, np.ndarray]:
    """Mean attention distance (patches) and entropy (nats) per layer and head. Shapes: (L, H) each"""
    from rope_viz import capture

    qk, _ = get_capture(name, device, key, _pixels, method)
    return {"distance": capture.mean_attention_distance(qk)[0].numpy(),
            "entropy": capture.attention_entropy(qk)[0].numpy()}


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
    from rope_viz import collapse

    return collapse.collapse_rows([get_model(n, device) for n in names], resolution, limit)


def load_shared(name: str, device: str) -> models.LoadedModel:
    """The shared cached model (sweeps never change it: interpolation works on a private copy)."""
    return get_model(name, device)


# ---------------------------------------------------------------- attribution

@st.cache_resource(show_spinner=False, max_entries=16)
def get_random_model(name: str, device: str):
    """The same architecture with random weights (model-randomisation sanity check), as a LoadedModel."""
    from rope_viz import attribution

    loaded = get_model(name, device)
    return models.LoadedModel(module=attribution.randomized_copy(loaded), spec=loaded.spec, device=device)


@st.cache_data(show_spinner="Computing the attribution…", max_entries=64)
def get_attribution(name: str, device: str, key: str, _pixels: np.ndarray, method: str, target: int | None,
                    steps: int | None, block: int, randomized: bool) -> dict:
    """{map (h, w) numpy, target, predicted, probability, delta, logit_gap, steps, capped} for one model
    and image; steps None lets IG choose them."""
    from rope_viz import attribution

    loaded = get_random_model(name, device) if randomized else get_model(name, device)
    x = loaded.normalise(torch.from_numpy(_pixels).permute(2, 0, 1)[None])
    options = {"steps": steps, "mean": loaded.spec.mean, "std": loaded.spec.std}
    if block >= 0:
        options["block"] = min(block, len(loaded.module.blocks) - 1)
    result = attribution.attribute(loaded, x, method, target=target, **options)
    with torch.no_grad():
        probs = loaded.module(x)[0].float().softmax(-1)
    return {"map": result.map[0].detach().float().cpu().numpy(), "target": int(result.target[0]),
            "predicted": int(probs.argmax()), "probability": float(probs.max()),
            "delta": None if result.delta is None else float(result.delta[0]),
            "logit_gap": None if result.logit_gap is None else float(result.logit_gap[0]),
            "steps": result.steps, "capped": result.capped}


# ---------------------------------------------------------------- browser components (rope_viz/frontend)

_explorer = st.components.v2.component(
    "rope_viz.attention_explorer", html=(FRONTEND / "explorer.html").read_text(),
    css=(FRONTEND / "explorer.css").read_text(), js=(FRONTEND / "explorer.js").read_text())
_copy_link = st.components.v2.component(
    "rope_viz.copy_link", html=(FRONTEND / "copylink.html").read_text(),
    css=(FRONTEND / "copylink.css").read_text(), js=(FRONTEND / "copylink.js").read_text())


def get_explorer_payload(names: list[str], labels: list[str], device: str, key: str, pixels: np.ndarray, layer: int,
                         patch: int, state: dict, method: str = "extrapolate") -> bytes:
    """The explorer's bytes: the image and `layer`'s q and k of each model under a position method
    (already captured, shared)."""
    captures = {label: get_capture(name, device, key, pixels, method)[0] for name, label in zip(names, labels)}
    payload_id = f"{key}|{'|'.join(names)}|{layer}|{method}"
    return explorer.pack(captures, layer, pixels, patch, {**state, "payload_id": payload_id})


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

@st.cache_data(show_spinner="Computing patch features…", max_entries=64)
def get_patch_features(name: str, device: str, key: str, _pixels: np.ndarray) -> np.ndarray:
    """Last-layer patch features of one model on one image. Shapes: -> (gh, gw, C) float32"""
    from rope_viz import features

    loaded = get_model(name, device)
    x = loaded.normalise(torch.from_numpy(_pixels).permute(2, 0, 1)[None])
    return features.compute_patch_features(loaded, x)[0].cpu().numpy()


@st.cache_data(show_spinner=False, max_entries=32)
def get_pca_maps(name: str, device: str, keys: tuple[str, ...], _pixels: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """PCA colour maps of one model at several resolutions with ONE basis fitted on all of them.

    Shapes: -> [(gh_r, gw_r, 3) float in [0, 1]] in the order of `keys`
    """
    from rope_viz import features

    maps = [torch.from_numpy(get_patch_features(name, device, k, p)) for k, p in zip(keys, _pixels)]
    basis = features.fit_pca(maps)
    return [features.pca_rgb(m, basis).numpy() for m in maps]


@st.cache_data(show_spinner=False, max_entries=256)
def get_patch_similarity(name: str, device: str, key: str, _pixels: np.ndarray, qx: int, qy: int) -> np.ndarray:
    """Cosine similarity of patch (qx, qy) to every patch. Shapes: -> (gh, gw)"""
    from rope_viz import features

    f = torch.from_numpy(get_patch_features(name, device, key, _pixels))
    return features.patch_similarity(f, (qx, qy)).numpy()


@st.cache_data(show_spinner="Measuring feature stability…", max_entries=16)
def get_stability(names: tuple[str, ...], resolutions: tuple[int, ...], n_images: int, mode: str,
                  device: str) -> list[dict]:
    """Feature stability rows (see features.stability_sweep) for every model x resolution."""
    from rope_viz import features

    return features.stability_sweep(list(names), list(resolutions), n_images, mode, device, load=load_shared)


# ---------------------------------------------------------------- position methods

@st.cache_data(show_spinner=False, max_entries=256)
def get_method_freqs(freqs_head: np.ndarray, method: str, grid: tuple[int, int],
                     train_grid: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(freqs (D/2, 2) on `grid`, logit scale) of one head's training-grid freqs under a position method."""
    from rope_viz import positions

    out = positions.compute_positions(method, torch.from_numpy(freqs_head)[None, None], grid, train_grid)
    return out.freqs[0, 0].numpy(), out.logit_scale
