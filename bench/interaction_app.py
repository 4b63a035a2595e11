"""Bare Streamlit pages for bench/interaction.py (run with `streamlit run`; not part of the app).

?mode=floor&res=R: the Attention page's two click-to-query charts and nothing else, maps precomputed,
  so a click costs only Streamlit's round trip and Plotly's redraw: the floor of the server path. The
  layout is wide with a sidebar, as the app's, so the charts are as wide as the page's (940 px in a
  1400 px window): the same charts, the same pixels to draw.
?mode=vitb&res=448: the browser-side explorer on ViT-B/16 RoPE-Mixed with random weights (seed 0).
"""
import streamlit as st
import timm
import torch

from rope_viz import capture, data, models
from rope_viz.app import cached, explorer, figures

st.set_page_config(layout="wide")
st.sidebar.caption("bench/interaction_app.py: the floor of the Attention page's server path")
MODELS = ["scenes-ape", "scenes-rope-mixed"]
VITB = "vit_base_patch16_rope_mixed_224"
mode = st.query_params.get("mode", "floor")
res = int(st.query_params.get("res", 64))


@st.cache_resource
def vitb_capture(resolution: int):
    """Random-weight ViT-B/16 (seeded, so bench/interaction.py can rebuild the same one) and one scene."""
    torch.manual_seed(0)
    module = timm.create_model(VITB, pretrained=False, img_size=resolution).eval()
    image, _ = data.render_scene(data.EVAL_SEEDS.start, resolution)
    pixels = (data.resize_center_crop(image, resolution) * 255).round().to(torch.uint8)  # (3, R, R)
    x = data.normalise(pixels[None], models.IMAGENET_MEAN, models.IMAGENET_STD)
    return capture.capture_qk(module, x), pixels.permute(1, 2, 0).numpy()


if mode == "vitb":
    qk, pixels = vitb_capture(res)
    gh, gw = qk.grid
    state = {"view": "query", "head": 0, "opacity": 0.6, "pinned": [gw // 2, gh // 2], "key": "att_explorer",
             "panel_px": 400, "payload_id": f"vitb{res}"}
    payload = explorer.pack({"ViT-B/16 RoPE-Mixed (random weights)": qk}, qk.num_layers - 1, pixels, 16, state)
    cached.show_explorer(payload, "att_explorer", lambda x, y: None)
else:
    sample = sorted((models.ASSETS_DIR / "images").glob("scene_*.png"))[0]
    pixels = cached.get_input_image("sample", str(sample), res)
    key, device, patch = data.pixels_key(pixels), cached.get_device(), 8
    gw = res // patch
    panels = {name: cached.get_attention_panels(name, device, key, pixels, "query", 3, 0, gw // 2, gw // 2, "mean")
              for name in MODELS}
    zmax = max(float(a.max()) for p in panels.values() for a in p.values())

    @st.fragment
    def charts():
        for name in MODELS:
            event = st.session_state.get(f"floor_{name}")
            points = event.get("selection", {}).get("points", []) if event else []
            if points:
                st.session_state["floor_q"] = (int(points[-1]["x"]), int(points[-1]["y"]))
        q = st.session_state.get("floor_q", (gw // 2, gw // 2))
        for name in MODELS:
            st.plotly_chart(figures.fig_attention_overlay(pixels, panels[name], patch, zmax, 0.6, q, title=name),
                            key=f"floor_{name}", on_select="rerun", selection_mode="points")

    charts()
