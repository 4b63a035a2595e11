"""Home: what rope-viz shows, which models are here and where from, and the compute device."""
import streamlit as st

from pages import shared
from rope_viz import cached, models
from rope_viz.errors import RopeVizError

cached.use_app_navigation()  # before anything is drawn (see its docstring)

st.title("rope-viz: what Rotary Position Embedding does inside Vision Transformers")
shared.share_view({})
st.markdown(
    """
Vision Transformers need to know *where* each image patch is. **APE** (absolute position
embedding) adds a learned vector per grid cell; **RoPE** (rotary position embedding) instead
rotates each query/key feature pair by an angle proportional to the patch position, so the
attention logit between two patches depends only on their *offset*. Heo et al. (ECCV 2024)
compare **RoPE-Axial** (fixed frequencies along x and y) and **RoPE-Mixed** (learned 2D
frequencies per layer and head), with and without APE, and show that RoPE keeps its accuracy
far better when a 224 px model sees larger images.

**Pages**
- **Lesson: RoPE in 2D**: new to RoPE? Five small interactive steps from one rotating feature pair
  to what the bundled models do beyond their training grid.
- **Frequencies**: the frequency vectors w_j of every head, the phase maps cos(w_j · p), the
  similarity kernel around a patch you pick (axial's cross-shaped artefact vs mixed's diagonal
  reach), their 2D spectra, and how learned frequencies change across layers and heads.
- **Attention**: two models side by side on one image at any resolution; hover a patch to see
  its exact attention in one head, every head, the head mean, the CLS token's attention or the
  rollout, plus mean attention distance and entropy per layer and head, and each model's top-5.
- **Resolution**: accuracy against input size for several models at once (held-out scenes in
  zoom or canvas mode, or your image folder), RoPE positions extrapolated or interpolated, the
  paper's reported numbers beside hub models, attention statistics against size, CSV and JSON.
- **Attribution**: Integrated Gradients, saliency, SmoothGrad, occlusion, Grad-CAM and rollout
  for one or two models, with a sanity check against randomly initialised weights.

The five **bundled** models are small ViTs trained here on procedural scenes, one per position
kind of the paper (APE, RoPE-Axial, RoPE-Mixed, RoPE-Axial + APE, RoPE-Mixed + APE); every page
starts with them, offline and fast on a CPU.
"""
)

st.subheader("Compute device")
st.write(f"Models run on **{models.device_description(cached.get_device())}**.")

st.subheader("Models")
available = {s.name for s in cached.get_available_models()}
rows = [
    {
        "model": s.name,
        "position": models.pos_label(s.pos),
        "source": s.source,
        "weights here": "yes" if s.name in available else "no (download needed)",
        "train res (px)": s.train_res,
        "patch (px)": s.patch_size,
        "classes": s.num_classes,
    }
    for s in cached.get_all_models()
]
st.dataframe(rows, hide_index=True, width="stretch")
st.caption(
    "Three sources: **bundled** models ship in assets/models and load offline; **hub** models are "
    "naver's ImageNet RoPE ViTs (and DeiT-III as APE reference) through timm, usable once their "
    "weights are in the Hugging Face cache (`python -m rope_viz download NAME`); **local** checkpoints "
    "are files you add below."
)

with st.expander("Add a local checkpoint (.safetensors, .pth, .pt)"):
    with st.form("local_checkpoint"):
        path = st.text_input("Checkpoint path on this machine", placeholder="/path/to/model.safetensors")
        arch = st.selectbox("Architecture (timm name)", sorted({n.split(".")[0] for n in models.HUB_MODELS}))
        submitted = st.form_submit_button("Add")
    if submitted:
        try:
            spec = models.register_local(path.strip(), arch)
        except RopeVizError as err:
            st.error(str(err))
        else:
            cached.get_available_models.clear()
            cached.get_all_models.clear()
            st.success(f"Added {spec.name}; it is now listed on every page.")
