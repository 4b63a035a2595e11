"""rope-viz entry point: page config and navigation, nothing else."""
import streamlit as st

st.set_page_config(page_title="rope-viz: RoPE in Vision Transformers", page_icon="🌀", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True, url_path="home"),
    st.Page("pages/frequencies.py", title="Frequencies", icon=":material/blur_on:", url_path="frequencies"),
]
st.navigation(pages, position="sidebar").run()
