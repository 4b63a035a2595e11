"""rope-viz entry point: page config and navigation, nothing else."""
import streamlit as st

from rope_viz.app import navigation

st.set_page_config(page_title="rope-viz: RoPE in Vision Transformers", page_icon="🌀", layout="wide")

# The default page is served at "/" and reserves its url_path, so /home would open Streamlit's
# "Page not found" dialog: a hidden second entry for the same script answers /home.
home = navigation.HOME
entries = [
    st.Page(home.file, title=home.title, icon=home.icon, default=True, url_path=home.url_path),
    st.Page(home.file, title=home.title, icon=home.icon, url_path="home", visibility="hidden"),
    *(st.Page(p.file, title=p.title, icon=p.icon, url_path=p.url_path) for p in navigation.PAGES),
]
st.navigation(entries, position="sidebar").run()
