"""Lesson: RoPE in 2D, step by step."""
import streamlit as st

st.title("RoPE in 2D, step by step")
