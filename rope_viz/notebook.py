"""rope-viz in a notebook: the app's views as Plotly figures and the attention explorer as a widget.

    from rope_viz import notebook as rv
    rv.frequencies("scenes-rope-mixed")                          # frequency vectors of a layer and head
    rv.attention(["scenes-ape", "scenes-rope-mixed"], resolution=128)   # follows the mouse (anywidget)

Every function takes a model as a name the app knows (bundled, hub, or registered with
`rv.register_local(path, arch)`), a ModelSpec, or an already loaded model (`rv.load(name)`). The figures
are the app's own builders (rope_viz.app.figures, which import no Streamlit), and the widget runs the
app's own explorer.js (rope_viz/app/frontend) in the notebook's page. No Streamlit is imported here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import anywidget
import numpy as np
import plotly.graph_objects as go
import traitlets

from rope_viz import models, rope
from rope_viz.app import explorer, feature_figures, figures, standalone, views
from rope_viz.errors import RopeVizError
from rope_viz.measure import features, sweep as sweeps
from rope_viz.scenes import data

register_local = models.register_local  # a checkpoint for a timm architecture, or a Hugging Face directory -> ModelSpec
list_models = models.list_models
_LOADED: dict[str, models.LoadedModel] = {}


class NotebookError(RopeVizError):
    """What a notebook call cannot show, in one sentence."""


def load(model, device: str | None = None) -> models.LoadedModel:
    """A model by name (bundled, hub or registered), ModelSpec or LoadedModel; names are loaded once."""
    if isinstance(model, models.LoadedModel):
        return model
    device = device or models.default_device()
    name = model.name if isinstance(model, models.ModelSpec) else str(model)
    if (name, device) not in _LOADED:
        _LOADED[(name, device)] = models.load_model(model, device)
    return _LOADED[(name, device)]


def image(resolution: int, scene: int | None = None, path: str | os.PathLike | None = None) -> np.ndarray:
    """What a model sees: a scene rendered at `resolution` (seed `scene`), a file resized and centre-cropped
    (`path`), or by default the app's first sample image. Shapes: -> (R, R, 3) uint8"""
    if scene is not None:
        return data.input_image("scene", f"{scene}:zoom", resolution)
    if path is None:
        path = sorted((models.ASSETS_DIR / "images").glob("scene_*.png"))[0]
    return data.input_image("sample", str(path), resolution)


def _freqs(loaded: models.LoadedModel, grid: int | None) -> np.ndarray:
    freqs = rope.model_freqs(loaded.module, None if grid is None else (grid, grid))
    if freqs is None:
        raise NotebookError(f"{loaded.spec.name} has no RoPE (absolute positions only): no frequencies to show.")
    return freqs.numpy()  # (L, H, D/2, 2)


def frequencies(model, layer: int = 0, head: int = 0, log_magnitude: bool = False) -> go.Figure:
    """The model's RoPE frequency vectors w_j (rad/patch) of one layer and head, with the axial and mixed
    references of its family (the Frequencies page's first view)."""
    loaded = load(model)
    sets = views.axial_vs_mixed(loaded.spec.family, _freqs(loaded, None), label=loaded.spec.family_label)
    heads = {label: f[min(layer, len(f) - 1), head] for label, f in sets.items()}
    return figures.fig_freq_vectors(heads, log_magnitude, title=f"{loaded.spec.display}: frequency vectors, "
                                                               f"layer {layer}, head {head}")


def kernel(model, layer: int = 0, head: int = 0, grid: int = 16, query: tuple[int, int] | None = None) -> go.Figure:
    """The RoPE similarity kernel mean_j cos(w_j . (p - p_query)) of one head on a grid x grid patch grid."""
    loaded = load(model)
    qx, qy = query if query is not None else (grid // 2, grid // 2)
    sets = views.axial_vs_mixed(loaded.spec.family, _freqs(loaded, None), label=loaded.spec.family_label)
    panels = {label: views.kernel(f[min(layer, len(f) - 1), head], grid, grid, (qx, qy)) for label, f in sets.items()}
    return figures.fig_heatmaps(panels, f"{loaded.spec.display}: mean_j cos(w_j · (p − p_query)), layer {layer}, "
                                        f"head {head}", "similarity", zmin=-1, zmax=1, query_xy=(qx, qy),
                                value_name="similarity")


def feature_maps(model, resolutions=(64, 128), query: tuple[float, float] = (0.5, 0.5), **image_args) -> go.Figure:
    """Last-layer patch features as PCA colours (one basis for every resolution) and the cosine similarity
    to the patch at `query` (fractions of width and height), one column per resolution."""
    loaded = load(model)
    pixels = {r: image(r, **image_args) for r in resolutions}
    maps = {r: features.image_patch_features(loaded, p) for r, p in pixels.items()}
    rgb = dict(zip((f"{r} px" for r in maps), features.pca_maps(list(maps.values()))))
    sims = {f"{r} px": features.similarity_map(m, features.relative_to_patch(*query, m.shape[:2]))
            for r, m in maps.items()}
    return feature_figures.fig_feature_panels(rgb, sims, query, title=loaded.spec.display)


def resolution_sweep(names, resolutions=(32, 64, 96, 128), limit: int = 50, dataset: str = "shapes",
                     methods=None) -> go.Figure:
    """Top-1 against resolution on `limit` held-out images per cell (rope_viz.sweep), as the Resolution page."""
    names = [names] if isinstance(names, (str, models.ModelSpec)) else list(names)
    names = [n.name if isinstance(n, models.ModelSpec) else n for n in names]
    rows = sweeps.accuracy_sweep(names, list(resolutions), dataset=dataset, limit=limit, methods=methods,
                                 load=lambda name, device="cpu": load(name, device))
    train_res = {n: models.get_spec(n).train_res for n in names}
    return figures.fig_accuracy_vs_resolution(sweeps.train_resolution_change(rows, train_res), train_res,
                                              title=f"top-1 on {dataset}, N={limit}")


def explorer_payload(model_or_models, resolution: int | None = None, layer: int = -1, view: str = "query",
                     head: int = 0, method: str = "native", layers=None, heads=None, **image_args) -> dict[str, bytes]:
    """{"layer i": the explorer's bytes} for one or more models (same patch size) on one image; `layers` and
    `heads` (default: `layer`, every head) bound its size."""
    chosen = model_or_models if isinstance(model_or_models, (list, tuple)) else [model_or_models]
    loaded = [load(m) for m in chosen]
    resolution = resolution or loaded[0].spec.train_res
    pixels = image(resolution, **image_args)
    if view not in explorer.VIEWS:
        raise NotebookError(f"Unknown view {view!r}; valid: {', '.join(explorer.VIEWS)}.")
    captures = {m.spec.display: views.capture_image(m, pixels, method) for m in loaded}
    depth = min(qk.num_layers for qk in captures.values())
    layers = [layer % depth] if layers is None else [int(x) % depth for x in layers]
    gh, gw = next(iter(captures.values())).grid
    state = {"view": view, "head": head, "opacity": 0.6, "pinned": [gw // 2, gh // 2], "key": "notebook",
             "panel_px": 320 if len(loaded) > 1 else 400,
             "payload_id": f"{'|'.join(m.spec.name for m in loaded)}|{resolution}|{method}"}
    return standalone.layer_payloads(captures, layers, pixels, loaded[0].spec.patch_size, state,
                                     heads=None if heads is None else list(heads))


ESM = """
const SOURCE = %s, HTML = %s;
let loading = null;
function explorerModule() {  // rope_viz/app/frontend/explorer.js, imported once as an ES module
  loading = loading || import(URL.createObjectURL(new Blob([SOURCE], { type: "text/javascript" })))
    .catch(() => import("data:text/javascript;charset=utf-8," + encodeURIComponent(SOURCE)));
  return loading.then((m) => m.default);
}
function bytesOf(value) {
  if (value instanceof DataView) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return value instanceof Uint8Array ? value : new Uint8Array(value);
}
export default {
  async render({ model, el }) {
    el.innerHTML = HTML;
    const mount = await explorerModule();
    const draw = () => mount({ data: bytesOf(model.get("payload")), parentElement: el,
      setTriggerValue: (name, value) => { if (name === "pinned") { model.set("pinned", [value.x, value.y]);
        model.save_changes(); } } });
    model.on("change:payload", draw);
    draw();
  },
};
"""


class AttentionWidget(anywidget.AnyWidget):
    """The attention explorer in a notebook: hover a map to move the query, click to pin it (`pinned`)."""
    _esm = traitlets.Unicode(ESM % (json.dumps(standalone.source("explorer.js")),
                                    json.dumps(standalone.source("explorer.html")))).tag(sync=True)
    _css = traitlets.Unicode(standalone.source("explorer.css")).tag(sync=True)
    payload = traitlets.Bytes(b"").tag(sync=True)
    pinned = traitlets.List([]).tag(sync=True)

    def __init__(self, payloads: dict[str, bytes], title: str = "rope-viz attention"):
        super().__init__(payload=next(iter(payloads.values())))
        self.payloads, self.title = payloads, title

    def show_layer(self, label: str) -> None:
        """Switch to another of the widget's layers ("layer i")."""
        self.payload = self.payloads[label]

    def save_html(self, path: str | os.PathLike) -> Path:
        """This view (every layer the widget holds) as one self-contained HTML file that works offline."""
        return standalone.save_html(path, self.payloads, self.title)


def attention(model_or_models, resolution: int | None = None, layer: int = -1, view: str = "query", head: int = 0,
              method: str = "native", layers=None, heads=None, **image_args) -> AttentionWidget:
    """The attention explorer (the app's explorer.js) as a widget: one or two models on one image at
    `resolution`; `layers` (default: just `layer`) and `heads` (default: all) are what it holds; `view` one
    of explorer.VIEWS."""
    payloads = explorer_payload(model_or_models, resolution, layer, view, head, method, layers, heads, **image_args)
    labels = [m["label"] for m in explorer.unpack_header(next(iter(payloads.values())))["models"]]
    return AttentionWidget(payloads, f"{' vs '.join(labels)}: attention")


def save_html(path: str | os.PathLike, model_or_models, resolution: int | None = None, layers=None,
              view: str = "query", **options) -> Path:
    """The attention explorer for these models as one self-contained HTML file (offline, no server);
    `layers` (default: the last) and `heads=[...]` (default: all) bound its size. Returns the path."""
    payloads = explorer_payload(model_or_models, resolution, view=view, layers=layers, **options)
    labels = [m["label"] for m in explorer.unpack_header(next(iter(payloads.values())))["models"]]
    return standalone.save_html(path, payloads, f"{' vs '.join(labels)}: attention")


__all__ = ["AttentionWidget", "attention", "explorer_payload", "feature_maps", "frequencies", "image",
           "kernel", "list_models", "load", "register_local", "resolution_sweep", "save_html"]
