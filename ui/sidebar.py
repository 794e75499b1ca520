"""The sidebar every page shares: the current dataset, the current run and the server's training queue."""

from __future__ import annotations

import streamlit as st

from core.datasets import load_dataset
from core.errors import StudioError
from ui.jobs import get_manager
from ui.state import get_dataset_id, get_run_id, get_workspace


def render_sidebar() -> None:
    with st.sidebar:
        dataset_id = get_dataset_id()
        if dataset_id:
            try:
                dataset = load_dataset(get_workspace(), dataset_id)
                st.markdown(f"**Dataset:** {len(dataset.entries)} images, {len(dataset.classes)} classes")
                st.caption(dataset.id)
            except StudioError:
                st.caption(f"Dataset {dataset_id} is gone; pick another on the Data page.")
        else:
            st.caption("No dataset yet: start on the Data page.")
        run_id = get_run_id()
        if run_id:
            st.markdown("**Current run**")
            st.caption(run_id)
        training_status()


@st.fragment(run_every=2.0)
def training_status() -> None:
    manager = get_manager()
    running, queued = manager.running(), manager.queue()
    if running or queued:
        st.markdown("**Training on this server**")
        for record in running:
            st.caption(f"▶ {record['run_id']} (running)")
        if queued:
            st.caption(f"{len(queued)} waiting in the queue")
