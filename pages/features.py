"""Features: last-layer patch features across resolutions (PCA colours, patch similarity, stability)."""
import streamlit as st

from pages import shared
from rope_viz.app import cached, feature_figures, views
from rope_viz.measure import features
from rope_viz.scenes import data
from rope_viz.errors import RopeVizError

cached.use_app_navigation()  # before anything is drawn (see its docstring)

URL_KEYS = {"feat_res": "list_int", "feat_aspect": "bool", "feat_source": "str", "feat_sample": "str", "feat_seed": "int",
            "feat_u": "float", "feat_v": "float", "feat_stab_models": "list", "feat_stab_res": "list_int",
            "feat_stab_n": "int"}

st.title("Dense features across resolutions")
st.markdown(
    "The label-free view of extrapolation, and the only one for models without a classifier. The same image "
    "at several resolutions, side by side: **PCA colours** of the last layer's patch features (one basis fitted "
    "on every resolution together, so a colour means the same feature everywhere) and the **cosine similarity** "
    "of one patch to every patch (**click a patch** to pick it). Features that keep their colours and "
    "similarity pattern as the input grows are stable; ones that break up are extrapolating badly."
)

shared.share_view({**shared.model_keys("feat"), **URL_KEYS})
specs = shared.pick_models("feat")
patch, train_res, step = specs[0].patch_size, specs[0].train_res, max(s.step for s in specs)
choices = sorted({step * k for k in range(1, 65) if step * k <= 1024} | {train_res})
c1, c2 = st.columns([2, 1])
resolutions = sorted(c1.multiselect(
    "resolutions (px)", choices, default=[r for r in (train_res, 2 * train_res, 3 * train_res) if r in choices],
    key="feat_res", help=f"Multiples of {step} px (the patch size{'' if step == patch else ' x merge'}); trained at {train_res} px."))
source = c2.radio("image", ["sample scene", "scene by seed", "upload"], horizontal=True, key="feat_source")
if not resolutions:
    st.info("Choose at least one resolution.")
    st.stop()

raw = None
if source == "sample scene":
    shared.restore_choice("feat_sample", shared.SAMPLES)
    sample = st.selectbox("sample", shared.SAMPLES, key="feat_sample",
                          format_func=lambda p: p.stem.split("_", 2)[-1].replace("_", " "))
    kind, value = "sample", str(sample)
elif source == "scene by seed":
    seed = int(st.number_input("scene seed", min_value=0, value=data.EVAL_SEEDS.start, key="feat_seed",
                               help="Seeds from 10,000,000 are held out from training. Rendered natively at "
                                    "each resolution (zoom: the same scene at more pixels)."))
    kind, value = "scene", f"{seed}:zoom"
else:
    upload = st.file_uploader("an image (PNG, JPEG, …; at most 40 megapixels)", key="feat_upload")
    if upload is None:
        st.info("Upload an image to continue; nothing else changes.")
        st.stop()
    kind, value, raw = "upload", upload.name, upload.getvalue()

aspect = 0
if all(s.is_tower for s in specs):  # towers take any aspect: Qwen-VL's and Pixtral's native dynamic resolution
    keep = st.toggle("keep the image's aspect (native dynamic resolution)", key="feat_aspect",
                     help=f"A file is resized, not cropped, to about r x r pixels with its own aspect, sides multiples "
                          f"of {step} px, as Qwen-VL's processor does (scenes are square anyway).")
    aspect = step if keep else 0
device = cached.get_device()
try:
    pixels = {r: cached.get_input_image(kind, value, r, raw, aspect) for r in resolutions}  # (h, w, 3) uint8 each
    keys = {r: data.pixels_key(pixels[r]) for r in resolutions}
    rgb = {s.name: cached.get_pca_maps(s.name, device, tuple(keys.values()), tuple(pixels.values())) for s in specs}
except RopeVizError as err:
    st.error(str(err))
    st.stop()


@st.fragment
def feature_panel():
    for spec in specs:  # a click on any panel of either model moves the query (image fractions)
        event = st.session_state.get(f"feat_chart_{spec.name}")
        points = event.get("selection", {}).get("points", []) if event else []
        if points and (points[-1]["x"], points[-1]["y"]) != st.session_state.get(f"feat_seen_{spec.name}"):
            st.session_state[f"feat_seen_{spec.name}"] = (points[-1]["x"], points[-1]["y"])
            st.session_state["feat_u"] = round(float(points[-1]["x"]), 3)
            st.session_state["feat_v"] = round(float(points[-1]["y"]), 3)
    c1, c2 = st.columns(2)
    u = float(c1.number_input("query x (fraction of width)", 0.0, 0.999, 0.5, 0.01, key="feat_u", format="%.3f"))
    v = float(c2.number_input("query y (fraction of height)", 0.0, 0.999, 0.5, 0.01, key="feat_v", format="%.3f"))
    table, tiles = [], []
    for spec in specs:
        panels, sims = {}, {}
        for r, colours in zip(resolutions, rgb[spec.name]):
            gh, gw = colours.shape[:2]
            h, w = pixels[r].shape[:2]
            label = f"{r} px" if h == w else f"{h} x {w} px"
            qx, qy = features.relative_to_patch(u, v, (gh, gw))
            sims[label] = cached.get_patch_similarity(spec.name, device, keys[r], pixels[r], qx, qy)
            panels[label] = colours
            table += [{"model": spec.name, "resolution": r, "height": h, "width": w, "x": x, "y": y,
                       "similarity": float(sims[label][y, x]),
                       "pca_r": float(colours[y, x, 0]), "pca_g": float(colours[y, x, 1]),
                       "pca_b": float(colours[y, x, 2])} for y in range(gh) for x in range(gw)]
        tiles += [list(panels.values()), [features.similarity_to_rgb(s) for s in sims.values()]]
        st.plotly_chart(feature_figures.fig_feature_panels(panels, sims, (u, v), title=spec.display),
                        key=f"feat_chart_{spec.name}", on_select="rerun", selection_mode="points")
    c1, c2 = st.columns(2)
    c1.download_button("Download maps (CSV)", views.to_csv(table), file_name="features.csv", mime="text/csv",
                       key="feat_csv", on_click="ignore")
    c2.download_button("Download maps (PNG)", features.mosaic_png(tiles), file_name="features.png",
                       mime="image/png", key="feat_png", on_click="ignore",
                       help="Rows: each model's PCA maps, then its similarity maps (blue -1, white 0, red 1).")
    st.caption("× marks the query patch: the patch containing the same image point at every resolution. "
               "PCA colours: the first three principal components of all panels' patches of one model, each "
               "mapped from its 1st to 99th percentile onto 0-255.")


feature_panel()

# ------------------------------------------------------------------ stability
st.subheader("Stability: how far features move from those at the training resolution")
st.markdown("Mean cosine similarity between each patch feature at resolution r, resampled onto the training grid "
            "(bilinear), and the same patch at the training resolution, over held-out scenes in zoom mode (the "
            "same content at more pixels). 1 = unchanged. Needs no labels, so headless models work too.")
available = cached.get_available_models()
spec_of = {s.name: s for s in available}
shared.restore_choice("feat_stab_models", list(spec_of))
shared.restore_choice("feat_stab_res", choices)
c1, c2, c3 = st.columns([3, 2, 1])
names = c1.multiselect("models", list(spec_of), default=[s.name for s in specs], key="feat_stab_models",
                       format_func=lambda n: spec_of[n].display)
stab_res = c2.multiselect("resolutions (px)", choices, default=[r for r in (train_res // 2, train_res, 2 * train_res,
                                                                            3 * train_res, 4 * train_res)
                                                                if r in choices], key="feat_stab_res")
n_images = int(c3.number_input("scenes", 1, 256, 8, key="feat_stab_n"))
shared.write_url()  # the sizes follow model A's patch: a value Streamlit just cut goes in the link now
if names and stab_res and st.button("Measure stability", type="primary", key="feat_stab_run"):
    st.session_state["feat_stab_key"] = (tuple(names), tuple(sorted(stab_res)), n_images)
stab_key = st.session_state.get("feat_stab_key")
if stab_key:
    try:
        rows = cached.get_stability(*stab_key, "zoom", device)
    except RopeVizError as err:
        st.error(str(err))
        st.stop()
    st.plotly_chart(feature_figures.fig_stability(rows, f"Feature stability over {stab_key[2]} held-out scenes (zoom)"),
                    key="feat_stab_chart")
    st.dataframe(rows, hide_index=True, width="stretch", key="feat_stab_table")
    st.download_button("Download stability (CSV)", views.to_csv(rows), file_name="feature_stability.csv",
                       mime="text/csv", key="feat_stab_csv", on_click="ignore")
