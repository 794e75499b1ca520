"""The sidebar every page shares: the current dataset, the current run and the server's training queue.

It is a fragment that refreshes itself, so a dataset picked or a run started further down the page
shows here within two seconds without rerunning the page.
"""

from __future__ import annotations

import streamlit as st

from core.datasets import load_dataset
from core.errors import StudioError
from ui.jobs import get_manager
from ui.state import get_dataset_id, get_run_id, get_workspace


@st.cache_data(max_entries=64, show_spinner=False)
def _dataset_line(dataset_id: str) -> str | None:
    try:
        dataset = load_dataset(get_workspace(), dataset_id)
    except StudioError:
        return None
    return f"{len(dataset.entries)} images, {len(dataset.classes)} classes"


def render_sidebar() -> None:
    with st.sidebar:
        sidebar_status()


@st.fragment(run_every=2.0)
def sidebar_status() -> None:
    dataset_id = get_dataset_id()
    if dataset_id:
        line = _dataset_line(dataset_id)
        st.markdown(f"**Dataset:** {line}" if line else "**Dataset:** gone; pick another on the Data page")
        st.caption(dataset_id)
    else:
        st.caption("No dataset yet: start on the Data page.")
    run_id = get_run_id()
    if run_id:
        st.markdown("**Current run**")
        st.caption(run_id)
    manager = get_manager()
    running, queued = manager.status()
    if running or queued:
        st.markdown("**Training on this server**")
        for record in running:
            st.caption(f"▶ {record['run_id']} (running)")
        if queued:
            st.caption(f"{len(queued)} waiting in the queue")
