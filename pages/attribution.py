"""Attribution: which pixels or patches drove each model's answer (captum), side by side."""
import streamlit as st

from pages import shared
from rope_viz import models
from rope_viz.app import cached, figures
from rope_viz.measure import attribution
from rope_viz.scenes import data
from rope_viz.errors import RopeVizError

cached.use_app_navigation()  # before anything is drawn (see its docstring)

URL_KEYS = {"attr_method": "str", "attr_target": "str", "attr_display": "str", "attr_opacity": "float",
            "attr_steps": "str", "attr_block": "int", "attr_sanity": "bool"}

st.title("Attribution")
st.markdown(
    "Attention shows where a model looks; an attribution shows what drove its answer. Gradients flow "
    "through RoPE's rotations, so every method works for APE and RoPE models alike. Turn on the "
    "**sanity check** to compare with a randomly initialised copy of each model: a map that looks the same "
    "there does not depend on what the model learned (Adebayo et al., 2018)."
)

shared.share_view({**shared.model_keys("attr"), **shared.image_keys("attr"), **URL_KEYS})
specs = shared.pick_models("attr")
shared.restore_choice("attr_method", list(attribution.METHODS))
for spec in specs:
    if not spec.has_classifier:
        st.error(models.classifier_note(spec, "an attribution target"))
        st.stop()
patch = specs[0].patch_size
method = st.selectbox("method", list(attribution.METHODS), format_func=attribution.LABELS.get, key="attr_method")
pixels, resolution = shared.pick_image("attr", patch, specs[0].train_res, max_res=1024)

c1, c2, c3, c4 = st.columns(4)
class_names = specs[0].class_names
same_classes = all(s.class_names == class_names for s in specs)
target_name = c1.selectbox("target class", ["(predicted)"] + (list(class_names) if same_classes else []),
                           key="attr_target", help="Explain the predicted class, or any class of the models.")
target = None if target_name == "(predicted)" else list(class_names).index(target_name)
display = c2.radio("display", ["absolute", "signed"], horizontal=True, key="attr_display",
                   help="Signed keeps evidence for (red) and against (blue) the target; absolute shows magnitude.")
opacity = c3.slider("overlay opacity", 0.0, 1.0, 0.65, 0.05, key="attr_opacity")
shared.restore_choice("attr_steps", ["auto", 16, 32, 64, 128, 256, 512])
ig_steps = c4.selectbox("IG steps", ["auto"] + [16, 32, 64, 128, 256, 512], key="attr_steps",
                        help="Integrated Gradients only. auto doubles the steps from 32 until the attributions add "
                             "up to the logit change within 1% (completeness), at most 512.")
steps = None if ig_steps == "auto" else int(ig_steps)
block = st.slider("Grad-CAM block", 0, 64, 64, key="attr_block",
                  help="Which block's output Grad-CAM reads (clipped to the model's last block).") \
    if method == "gradcam" else -1
sanity = st.toggle("sanity check: also show randomly initialised models", key="attr_sanity")

key = data.pixels_key(pixels)
device = cached.get_device()
panels, info, warnings = {}, [], []
try:
    for spec in specs:
        for randomized in ([False, True] if sanity else [False]):
            result = cached.get_attribution(spec.name, device, key, pixels, method, target, steps, block, randomized)
            label = f"{spec.label or spec.name}{' (random weights)' if randomized else ''}"
            panels[label] = result
            info.append({"model": label, "target": spec.class_names[result["target"]],
                         "predicted": spec.class_names[result["predicted"]],
                         "probability of predicted %": round(100 * result["probability"], 2),
                         **attribution.ig_columns(result["steps"], result["delta"], result["logit_gap"])})
            note = attribution.ig_warning(result["steps"], result["delta"], result["logit_gap"], result["capped"])
            if note:
                warnings.append(f"{label}: {note}")
except RopeVizError as err:
    st.error(str(err))
    st.stop()

# A static table: one to four rows, every column drawn at once (a data grid draws only the visible columns).
st.table(info, hide_index=True)
for note in warnings:
    st.warning(note)
signed = display == "signed" and attribution.METHODS[method].signed
maps = {label: (r["map"] if signed else abs(r["map"])) for label, r in panels.items()}
st.plotly_chart(figures.fig_attribution_overlay(pixels, maps, signed, opacity,
                                                f"{attribution.LABELS[method]} at {resolution} px"),
                key="attr_chart")
if display == "signed" and not signed:
    st.caption("This method gives magnitudes only; shown as absolute values.")
st.caption("One colour scale for every panel. Pixel methods are summed (signed) or maxed (absolute) over RGB; "
           "patch methods give one value per patch. IG's delta is its completeness error: the sum of the "
           "attributions minus the logit gap, the target logit's change from the baseline (the mean image) to "
           "the image. With auto steps IG doubles its steps from 32 until |delta| is at most 1% of the gap "
           "(at most 512).")
