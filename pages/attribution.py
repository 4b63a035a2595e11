"""Attribution: which pixels or patches drove each model's answer (captum), side by side."""
import streamlit as st

from rope_viz import attribution, cached, data, figures, models

NONE = "(none)"
SAMPLES = sorted((models.ASSETS_DIR / "images").glob("scene_*.png"))

st.title("Attribution")
st.markdown(
    "Attention shows where a model looks; an attribution shows what drove its answer. Gradients flow "
    "through RoPE's rotations, so every method works for APE and RoPE models alike. Turn on the "
    "**sanity check** to compare with a randomly initialised copy of each model: a map that looks the same "
    "there does not depend on what the model learned (Adebayo et al., 2018)."
)

available = cached.get_available_models()
spec_of = {s.name: s for s in available}
names = list(spec_of)
if not names:
    st.error("No models are available; see the Home page.")
    st.stop()


def default(pos: str, fallback: int) -> int:
    for i, s in enumerate(available):
        if s.source == "bundled" and s.pos == pos:
            return i
    return min(fallback, len(names) - 1)


c1, c2 = st.columns(2)
name_a = c1.selectbox("model A", names, index=default("ape", 0), format_func=lambda n: spec_of[n].display,
                      key="attr_model_a")
name_b = c2.selectbox("model B", [NONE] + names, index=1 + default("rope_mixed", 1),
                      format_func=lambda n: n if n == NONE else spec_of[n].display, key="attr_model_b")
chosen = [name_a] + ([name_b] if name_b not in (NONE, name_a) else [])
specs = [spec_of[n] for n in chosen]
if len({s.patch_size for s in specs}) > 1:
    st.error("The two models use different patch sizes; pick models with the same patch size to compare them.")
    st.stop()
patch = specs[0].patch_size

c1, c2, c3 = st.columns([2, 1, 2])
source = c1.radio("image", ["sample scene", "scene by seed", "upload"], horizontal=True, key="attr_source")
resolution = int(c2.number_input("resolution (px)", min_value=patch, max_value=1024, value=specs[0].train_res,
                                 step=patch, key="attr_res", help=f"A multiple of the patch size ({patch} px)."))
method = c3.selectbox("method", list(attribution.METHODS), format_func=attribution.METHODS.get, key="attr_method")
if resolution % patch:
    st.error(f"Resolution {resolution} px is not a multiple of the patch size ({patch} px).")
    st.stop()
try:
    if source == "sample scene":
        sample = st.selectbox("sample", SAMPLES, format_func=lambda p: p.stem.split("_", 2)[-1].replace("_", " "),
                              key="attr_sample")
        pixels = cached.get_input_image("sample", str(sample), resolution)
    elif source == "scene by seed":
        c1, c2 = st.columns(2)
        seed = int(c1.number_input("scene seed", min_value=0, value=data.EVAL_SEEDS.start, key="attr_seed"))
        mode = c2.selectbox("scene mode", data.MODES, key="attr_mode")
        pixels = cached.get_input_image("scene", f"{seed}:{mode}", resolution)
    else:
        upload = st.file_uploader("an image (at most 40 megapixels)", key="attr_upload")
        if upload is None:
            st.info("Upload an image to attribute.")
            st.stop()
        pixels = cached.get_input_image("upload", upload.name, resolution, upload.getvalue())
except data.ImageError as err:
    st.error(str(err))
    st.stop()

c1, c2, c3, c4 = st.columns(4)
class_names = specs[0].class_names
same_classes = all(s.class_names == class_names for s in specs)
target_name = c1.selectbox("target class", ["(predicted)"] + (list(class_names) if same_classes else []),
                           key="attr_target", help="Explain the predicted class, or any class of the models.")
target = None if target_name == "(predicted)" else list(class_names).index(target_name)
display = c2.radio("display", ["absolute", "signed"], horizontal=True, key="attr_display",
                   help="Signed keeps evidence for (red) and against (blue) the target; absolute shows magnitude.")
opacity = c3.slider("overlay opacity", 0.0, 1.0, 0.65, 0.05, key="attr_opacity")
steps = int(c4.number_input("IG steps", 4, 256, 32, step=4, key="attr_steps", help="Integrated Gradients only."))
block = st.slider("Grad-CAM block", 0, 64, 64, key="attr_block",
                  help="Which block's output Grad-CAM reads (clipped to the model's last block).") \
    if method == "gradcam" else -1
sanity = st.toggle("sanity check: also show randomly initialised models", key="attr_sanity")

key = cached.pixels_key(pixels)
device = cached.get_device()
panels, info = {}, []
try:
    for spec in specs:
        for randomized in ([False, True] if sanity else [False]):
            result = cached.get_attribution(spec.name, device, key, pixels, method, target, steps, block, randomized)
            label = f"{spec.label or spec.name}{' (random weights)' if randomized else ''}"
            panels[label] = result
            info.append({"model": label, "target": spec.class_names[result["target"]],
                         "predicted": spec.class_names[result["predicted"]],
                         "probability of predicted %": round(100 * result["probability"], 2),
                         "IG delta (logit)": result["delta"]})
except (models.ModelLoadError, ValueError) as err:
    st.error(str(err))
    st.stop()

st.dataframe(info, hide_index=True, width="stretch", key="attr_info")
signed = display == "signed" and method in ("ig", "occlusion")
maps = {label: (r["map"] if signed else abs(r["map"])) for label, r in panels.items()}
st.plotly_chart(figures.fig_attribution_overlay(pixels, maps, signed, opacity,
                                                f"{attribution.METHODS[method]} at {resolution} px"),
                key="attr_chart")
if display == "signed" and not signed:
    st.caption("This method gives magnitudes only; shown as absolute values.")
st.caption("One colour scale for every panel. Pixel methods are summed (signed) or maxed (absolute) over RGB; "
           "patch methods give one value per patch. IG's delta is its completeness error: the sum of the "
           "attributions minus the logit change from the baseline (the mean image).")
