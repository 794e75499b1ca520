"""Placeholder: being built."""

import streamlit as st

st.title("explore")
st.info("This page is being built.")
