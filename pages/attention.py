"""Attention: exact attention of any query patch, every head, CLS, rollout, distance and entropy."""
import streamlit as st

from pages import shared
from rope_viz import models
from rope_viz.app import anatomy_figures, cached, explorer, figures, views
from rope_viz.measure import capture, positions
from rope_viz.scenes import data
from rope_viz.errors import RopeVizError

cached.use_app_navigation()  # before anything is drawn (see its docstring)

PANEL_KEYS = {"att_engine": "str", "att_view": "str", "att_layer": "int", "att_head": "int",
              "att_opacity": "float", "att_fusion": "str", "att_qx": "int", "att_qy": "int",
              "att_method": "str", "att_band_k": "int", "att_heads_all": "bool"}
ENGINES = {"browser": "follows the mouse (computed in your browser)", "server": "on click (computed on the server)"}

st.title("Attention")
st.markdown(
    "Pick up to two models and an image, then **move the mouse over a map**: the patch under it is the "
    "query, and a click pins it. Every map is computed exactly from the queries and keys the model "
    "produced (one forward, fused attention kept), so it is what the model computed, at any resolution, "
    "including ones it was never trained on."
)
shared.share_view({**shared.model_keys("att"), **shared.image_keys("att"), **PANEL_KEYS})

specs = shared.pick_models("att")
chosen = [s.name for s in specs]
spec_of = {s.name: s for s in specs}
patch = specs[0].patch_size
pixels, resolution = shared.pick_image("att", patch, specs[0].train_res, step=max(s.step for s in specs))
method = st.selectbox("position method", list(positions.METHODS), format_func=positions.LABELS.get, key="att_method",
                      help="native: positions as the model itself computes them (the default). The others change "
                           "how RoPE positions go beyond the training grid (formulas in rope_viz.positions). Try "
                           "2-4x the training size to see what each changes; on the training grid they all agree.")
if method.startswith("drop_"):  # band ablation: how many pairs lose their rotation
    band_k = int(st.number_input("k pairs switched off", 0, 512, 4, key="att_band_k",
                                 help="Rotation off for the k lowest (drop_low) or highest (drop_high) |w| pairs "
                                      "of every head, the model's own positions for the rest (p-RoPE)."))
    method = f"{method}:{band_k}"
shared.port_notes(specs)

key = data.pixels_key(pixels)
device = cached.get_device()
captures = {}
for spec in specs:
    try:
        captures[spec.name] = cached.get_capture(spec.name, device, key, pixels, method)
    except RopeVizError as err:
        st.error(f"{spec.display}: {err}")
        st.stop()

for spec in specs:
    note = views.window_note(spec.display, captures[spec.name][0])
    if note:
        st.caption(note)
view_choices = views.attention_views([qk for qk, _ in captures.values()])
gh, gw = resolution // patch, resolution // patch
depth = min(qk.num_layers for qk, _ in captures.values())
heads = min(qk.q.shape[2] for qk, _ in captures.values())

# ------------------------------------------------------------------ predictions
st.subheader(f"Top-5 predictions at {resolution} px")
cols = st.columns(len(specs))
for col, spec in zip(cols, specs):
    col.markdown(f"**{spec.display}**")
    if spec.has_classifier:
        col.dataframe(views.top_k(captures[spec.name][1], spec.class_names), hide_index=True, width="stretch")
    else:
        col.info(models.classifier_note(spec, "a top-5"))


# ------------------------------------------------------------------ maps
@st.fragment
def attention_panel():
    st.subheader("Attention maps")
    shared.restore_choice("att_engine", list(ENGINES))
    shared.restore_choice("att_view", view_choices)
    shared.restore_choice("att_fusion", list(capture.HEAD_FUSIONS))
    engine = st.radio("maps", list(ENGINES), format_func=ENGINES.get, horizontal=True, key="att_engine",
                      help="In the browser, the maps follow the mouse with no round trip; rollout and the "
                           "CSV download are computed on the server.")
    c1, c2, c3 = st.columns(3)
    view = c1.selectbox("view", view_choices, format_func=views.ATTENTION_VIEWS.get, key="att_view")
    layer = c2.slider("layer", 0, depth - 1, depth - 1, key="att_layer") if depth > 1 else 0
    head = c3.slider("head", 0, heads - 1, 0, key="att_head") if heads > 1 else 0
    c1, c2 = st.columns(2)
    opacity = c1.slider("overlay opacity", 0.0, 1.0, 0.6, 0.05, key="att_opacity")
    fusion = "mean"
    if "rollout" in view_choices:  # windowed towers offer no rollout: no control for it either
        fusion = c2.selectbox("rollout head fusion", capture.HEAD_FUSIONS, key="att_fusion",
                              help="How rollout merges the heads of a layer before multiplying through the layers.")
    query_panel(engine, view, min(layer, depth - 1), head, opacity, fusion)


@st.fragment
def query_panel(engine: str, view: str, layer: int, head: int, opacity: float, fusion: str):
    """The query and the maps: a click on a map reruns only this (the controls above stay as they are)."""
    if st.session_state.pop("att_grid_clicked", False):  # a head picked on the grid: the sliders above must move
        st.rerun(scope="app")
    for name in chosen:  # a click on either model's chart moves the query
        event = st.session_state.get(f"att_chart_{name}")
        points = event.get("selection", {}).get("points", []) if event else []
        if points and (points[-1]["x"], points[-1]["y"]) != st.session_state.get(f"att_seen_{name}"):
            st.session_state[f"att_seen_{name}"] = (points[-1]["x"], points[-1]["y"])
            st.session_state["att_qx"], st.session_state["att_qy"] = int(points[-1]["x"]), int(points[-1]["y"])
    for k, size in (("att_qx", gw), ("att_qy", gh)):
        st.session_state[k] = min(max(int(st.session_state.get(k, size // 2)), 0), size - 1)
    c1, c2 = st.columns(2)
    qx = int(c1.number_input("query x (patch column)", 0, gw - 1, key="att_qx"))
    qy = int(c2.number_input("query y (patch row)", 0, gh - 1, key="att_qy"))

    shared.write_url()
    if engine == "browser" and view in explorer.VIEWS:
        browser_panel(view, layer, head, opacity, qx, qy)
    else:
        server_panel(view, layer, head, opacity, fusion, qx, qy)
    if st.toggle("Every head at once (a layers x heads grid of this query's maps)", key="att_heads_all",
                 help="BertViz's model view: off by default, as it redraws on every query."):
        head_grid(layer, head, qx, qy)


def server_panel(view: str, layer: int, head: int, opacity: float, fusion: str, qx: int, qy: int) -> None:
    """The maps drawn by the server (Plotly): a click on one moves the query."""
    panels = {name: cached.get_attention_panels(name, device, key, pixels, view, layer, head, qx, qy, fusion, method)
              for name in chosen}
    zmax = max(float(a.max()) for p in panels.values() for a in p.values()) or 1.0  # one scale for all panels
    where = "" if view == "rollout" else f", layer {layer}"
    for name in chosen:
        st.plotly_chart(
            figures.fig_attention_overlay(pixels, panels[name], patch, zmax, opacity, (qx, qy),
                                          title=f"{spec_of[name].display}: {views.ATTENTION_VIEWS[view]}{where}"),
            key=f"att_chart_{name}", on_select="rerun", selection_mode="points")

    def csv() -> str:  # built only when the button is pressed, so a click on a map does not pay for it
        return views.to_csv([{"model": name, "panel": label, "x": x, "y": y, "attention": float(a[y, x])}
                             for name, p in panels.items() for label, a in p.items()
                             for y in range(gh) for x in range(gw)])

    st.download_button("Download these maps (CSV)", data=csv, file_name=f"attention_{view}_{resolution}px.csv",
                       mime="text/csv", key="att_download", on_click="ignore")
    st.caption("Colour: attention weight (softmax probability, one scale shared by every panel). "
               "× marks the query patch. CLS and rollout maps start from the CLS token; attention to the "
               "CLS token itself is not drawn, so a map sums to less than 1.")


def pick_head(name: str) -> None:
    """A click on a small map of the head grid: show that layer and head in the maps (a callback, so it runs
    before the sliders are drawn; query_panel then reruns the whole page for them)."""
    event = st.session_state.get(f"att_grid_{name}")
    points = event.get("selection", {}).get("points", []) if event else []
    picked = next((p["customdata"] for p in reversed(points) if p.get("customdata")), None)
    if isinstance(picked, dict):  # a typed array's row arrives as {"0": layer, "1": head, ...}
        picked = [picked[str(i)] for i in range(len(picked))]
    if picked is not None:
        st.session_state["att_layer"] = min(int(picked[0]), depth - 1)
        st.session_state["att_head"] = min(int(picked[1]), heads - 1)
        st.session_state["att_grid_clicked"] = True


def head_grid(layer: int, head: int, qx: int, qy: int) -> None:
    """Every head at once: the query's map in each layer and head of each model (BertViz's model view)."""
    st.subheader("Every head at once")
    cols = st.columns(len(chosen))
    for col, name in zip(cols, chosen):
        maps = cached.get_head_grid(name, device, key, pixels, method, qx, qy)
        col.plotly_chart(anatomy_figures.fig_head_grid(maps, (qx, qy), (layer, head),
                                                       f"Every head, query patch ({qx}, {qy}): {spec_of[name].display}"),
                         key=f"att_grid_{name}", on_select=lambda name=name: pick_head(name),
                         selection_mode="points")
    st.caption("The query patch's attention in every layer (rows) and head (columns), each small map scaled to its "
               "own largest weight (hover for it); the frame marks the layer and head shown above. **Click a small "
               "map to show that head.** Look for heads that stay near the query (local, positional heads), heads "
               "that look at the same few patches from every query (sinks), and how the pattern spreads with depth.")


def pin_query(x: int, y: int) -> None:
    st.session_state["att_qx"], st.session_state["att_qy"] = x, y


def browser_panel(view: str, layer: int, head: int, opacity: float, qx: int, qy: int) -> None:
    """The explorer: q and k of this layer go to the browser once; hovering recomputes there."""
    labels = [spec_of[name].display for name in chosen]
    state = {"view": view, "head": head, "opacity": opacity, "pinned": [qx, qy], "key": "att_explorer",
             "panel_px": 320 if len(chosen) > 1 else 400}
    try:
        payload = cached.get_explorer_payload(chosen, labels, device, key, pixels, layer, patch, state, method)
    except RopeVizError as err:
        st.error(str(err))
        return
    cached.show_explorer(payload, "att_explorer", pin_query)
    html_download(labels, view, layer, state)
    st.caption(f"Layer {layer}: {views.ATTENTION_VIEWS[view]}. Colour: attention weight (softmax probability, "
               "one scale shared by every panel, recomputed for each query); × marks the query patch. "
               + ("Attention to the prefix tokens (CLS, registers) is not drawn, so a map sums to less than 1. "
                  if any(qk.num_prefix_tokens for qk, _ in captures.values()) else "")
               + "The numbers are computed in your browser from the model's own q and k (float32) and equal the "
               "server's.")


def html_download(labels: list[str], view: str, layer: int, state: dict) -> None:
    """This view (the chosen layers, every head) as one HTML file that works offline, with no server."""
    c1, c2 = st.columns(2)
    layers = c1.multiselect("layers in the HTML file", list(range(depth)), default=[layer], key="att_html_layers",
                            help="Each layer adds its q and k to the file; the file opens in any browser, offline.")
    kept = c2.multiselect("heads in the HTML file", list(range(heads)), default=list(range(heads)),
                          key="att_html_heads", help="Fewer heads, a smaller file (each model keeps these heads).")
    if not layers or not kept:
        return
    title = f"{' vs '.join(labels)}: {views.ATTENTION_VIEWS[view]} at {resolution} px"
    page = cached.get_explorer_html(chosen, labels, device, key, pixels, sorted(layers), patch, state, title, method,
                                    None if len(kept) == heads else sorted(kept))
    raw = page.encode()
    mb = len(raw) / 1e6
    st.download_button(f"Download this view as HTML ({mb:.{2 if mb >= 0.1 else 3}f} MB)", data=raw,
                       file_name=f"attention_{view}_{resolution}px.html", mime="text/html", key="att_html",
                       on_click="ignore")


attention_panel()

# ------------------------------------------------------------------ statistics
st.subheader("How far each head looks")
stats = {spec_of[n].display: cached.get_attention_stats(n, device, key, pixels, method) for n in chosen}
c1, c2 = st.columns(2)
c1.plotly_chart(figures.fig_stat_by_layer({k: v["distance"] for k, v in stats.items()},
                                          f"Mean attention distance at {resolution} px", "distance (patches)",
                                          "distance"), key="att_distance")
c2.plotly_chart(figures.fig_stat_by_layer({k: v["entropy"] for k, v in stats.items()},
                                          f"Attention entropy at {resolution} px", "entropy (nats)", "entropy"),
                key="att_entropy")
st.caption(
    "Mean attention distance: for each patch query, the attention-weighted distance (in patches) to the "
    "patches it attends to (attention to CLS left out, the rest renormalised), averaged over queries. "
    "Entropy: how spread a query's attention is (0 = one token; log N = uniform)."
)
st.caption(
    "On a canvas twice the training size the CLS query's attention spreads too (bundled RoPE-Axial, last layer: "
    "0.50 of the uniform log N at 64 px, 0.65 at 128 px; `bench/canvas_collapse.py`), but spreading alone is not "
    "why the models fail there: a log-N logit scale recovers 6 points, keeping the trained positions 60, both "
    "together 72 (20.0% to 92.2%). "
    "See *Why the bundled models fail on the 2x canvas* on the Resolution page."
)
