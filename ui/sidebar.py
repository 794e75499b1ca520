"""The sidebar every page shares: the current dataset and any running training."""

from __future__ import annotations

import streamlit as st

from ui.state import get_dataset_id, get_run_id


def render_sidebar() -> None:
    with st.sidebar:
        st.caption("Current dataset")
        st.write(get_dataset_id() or "none yet: start on the Data page")
        run_id = get_run_id()
        if run_id:
            st.caption("Current run")
            st.write(run_id)
