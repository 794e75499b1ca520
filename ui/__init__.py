"""Streamlit-only helpers: session state accessors, figure builders and widgets."""
