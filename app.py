"""rope-viz entry point: page config and navigation, nothing else."""
import streamlit as st

st.set_page_config(page_title="rope-viz: RoPE in Vision Transformers", page_icon="🌀", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True, url_path="home"),
    st.Page("pages/frequencies.py", title="Frequencies", icon=":material/blur_on:", url_path="frequencies"),
    st.Page("pages/attention.py", title="Attention", icon=":material/visibility:", url_path="attention"),
    st.Page("pages/resolution.py", title="Resolution", icon=":material/zoom_out_map:", url_path="resolution"),
    st.Page("pages/attribution.py", title="Attribution", icon=":material/ads_click:", url_path="attribution"),
]
st.navigation(pages, position="sidebar").run()
