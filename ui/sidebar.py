"""The sidebar every page shares: the current dataset, the current run and the training queue.

It polls (a fragment rerun every two seconds) only while a run of this workspace is queued or
training, and then reads the job manager's in-memory index, not the disk. When nothing is active it
is drawn once per page run and costs nothing while the tab rests. It is drawn before the page, so a
page that picks another dataset or run does so in a widget callback or reruns (the Data page).
"""

from __future__ import annotations

import streamlit as st

from core.data.datasets import load_dataset
from core.errors import StudioError
from core.spaces import spaces_enabled
from core.workspace import Workspace
from ui.jobs import VisitorJobs, get_manager
from ui.state import get_dataset_id, get_run_id, get_workspace

POLL_S = 2.0


@st.cache_data(max_entries=256, show_spinner=False)
def _dataset_line(root: str, dataset_id: str) -> str | None:
    try:
        dataset = load_dataset(Workspace.open(root), dataset_id)
    except StudioError:
        return None
    return f"{len(dataset.entries)} images, {len(dataset.classes)} classes"


def render_sidebar() -> None:
    with st.sidebar:
        if _active(get_manager()):
            st.fragment(_polled_status, run_every=POLL_S)()
        else:
            sidebar_status()


def _active(manager: VisitorJobs) -> bool:
    running, queued = manager.status()
    return bool(running or queued)


def _polled_status() -> None:
    if not _active(get_manager()):
        st.rerun(scope="app")  # nothing left to watch: a full run draws the sidebar without polling
    sidebar_status()


def sidebar_status() -> None:
    workspace = get_workspace()
    dataset_id = get_dataset_id()
    if dataset_id:
        line = _dataset_line(str(workspace.root), dataset_id)
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
        st.markdown("**Your training runs**" if spaces_enabled() else "**Training on this server**")
        for record in running:
            st.caption(f"▶ {record['run_id']} (running)")
        if queued:
            st.caption(f"{len(queued)} waiting in the queue")
    if spaces_enabled():
        server_running, server_queued = manager.server_counts()
        if server_running or server_queued:
            st.caption(f"Server: {server_running} training, {server_queued} waiting (all spaces)")
