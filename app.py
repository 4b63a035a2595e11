"""rope-viz entry point: page config and navigation, nothing else."""
import streamlit as st

st.set_page_config(page_title="rope-viz: RoPE in Vision Transformers", page_icon="🌀", layout="wide")

# The default page is served at "/" and reserves its url_path, so /home would open Streamlit's
# "Page not found" dialog: a hidden second entry for the same script answers /home.
pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True, url_path="start"),
    st.Page("pages/home.py", title="Home", icon=":material/home:", url_path="home", visibility="hidden"),
    st.Page("pages/lesson.py", title="Lesson: RoPE in 2D", icon=":material/school:", url_path="lesson"),
    st.Page("pages/frequencies.py", title="Frequencies", icon=":material/blur_on:", url_path="frequencies"),
    st.Page("pages/attention.py", title="Attention", icon=":material/visibility:", url_path="attention"),
    st.Page("pages/resolution.py", title="Resolution", icon=":material/zoom_out_map:", url_path="resolution"),
    st.Page("pages/features.py", title="Features", icon=":material/palette:", url_path="features"),
    st.Page("pages/attribution.py", title="Attribution", icon=":material/ads_click:", url_path="attribution"),
]
st.navigation(pages, position="sidebar").run()
