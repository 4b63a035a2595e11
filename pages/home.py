"""Home: what rope-viz shows, which models are here and where from, and the compute device."""
import streamlit as st

from pages import shared
from rope_viz import models
from rope_viz.app import cached, navigation, views
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

"""
)
st.markdown("**Pages**\n" + "\n".join(f"- **{p.title}**: {p.summary}" for p in navigation.PAGES))
st.markdown(
    """
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
        "family": s.family_label,
        "position": models.pos_label(s.pos),
        "source": s.source,
        "weights here": "yes" if s.name in available else "no (download needed)",
        "train res (px)": s.train_res,
        "patch (px)": s.patch_size,
        "prefix tokens": s.prefix_label,
        "classes": str(s.num_classes) if s.num_classes else "none (features)",
        "mean/std from": s.mean_std_source,
        "APE resampling": s.ape_resample or "-",
    }
    for s in cached.get_all_models()
]
st.dataframe(rows, hide_index=True, width="stretch")
st.caption(
    "Three sources: **bundled** models ship in assets/models and load offline; **hub** models are timm's "
    "pretrained ViTs of every RoPE family (naver's RoPE ViTs and DeiT-III as in the paper, EVA-02, timm's SBB "
    "RoPE ViTs, Perception Encoder, DINOv3) and plain APE ViTs, usable once their weights are in the Hugging "
    "Face cache (`python -m rope_viz download NAME`); **local** checkpoints are files you add below. The family "
    "and prefix tokens (CLS + registers, never rotated) are read from each model's modules; mean/std from its "
    "card or timm's pretrained_cfg. APE tables are resampled the paper's way (plain bicubic) for naver and "
    "APE-only models, timm's antialiased way otherwise. Models without classes (DINOv3 features, PE "
    "embeddings) work on Frequencies and Attention; accuracy, top-5 and attribution targets need classes."
)

st.subheader("Model families")
st.dataframe(views.family_rows(), hide_index=True, width="stretch")
st.caption("A model's family is read from its modules (rope_viz/adapters, one file per family). Where timm's port "
           "computes something other than the original code, the last column says so and names the position "
           "method that gives the original's behaviour.")

def add_local(register, where: str) -> None:
    """Register a local model (register() -> ModelSpec) and say so, or say in one sentence why not."""
    try:
        spec = register()
    except RopeVizError as err:
        st.error(str(err))
        return
    cached.get_available_models.clear()
    cached.get_all_models.clear()
    st.success(f"Added {spec.name} ({spec.family_label}); it is now listed on {where}.")


with st.expander("Add a local checkpoint (.safetensors, .pth, .pt, .bin)"):
    with st.form("local_checkpoint"):
        path = st.text_input("Checkpoint path on this machine", placeholder="/path/to/model.safetensors",
                             key="local_path")
        arch = st.selectbox("Architecture (timm name; type another)", models.local_arch_choices(),
                            accept_new_options=True, key="local_arch",
                            help="The checkpoint's family, position kind and prefix tokens are read from this "
                                 "architecture; a tag (.naver_in1k, ...) picks timm's mean/std for it.")
        submitted = st.form_submit_button("Add")
    if submitted:
        add_local(lambda: models.register_local(path.strip(), arch or ""), "every page")

with st.expander("Add a Hugging Face vision tower (a model directory, or a hub id in the local cache)"):
    with st.form("local_tower"):
        tower_path = st.text_input("Model directory or hub id", placeholder="/path/to/Qwen2.5-VL-3B-Instruct",
                                   key="tower_path",
                                   help="A directory as save_pretrained or snapshot_download leave it (config.json "
                                        "and safetensors). Only the vision tower is built and read; the language "
                                        "model is never loaded.")
        tower_submitted = st.form_submit_button("Add tower")
    if tower_submitted:
        add_local(lambda: models.register_local(tower_path.strip()), "every page that needs no classes")
