"""The server-wide job manager and a run's snapshot, for pages."""

from __future__ import annotations

import streamlit as st

from core import runs
from core.errors import RunError
from core.jobs import JobManager, get_job_manager
from ui.state import get_workspace


@st.cache_resource
def get_manager() -> JobManager:
    """One job manager per server process (it owns the worker processes and the queue)."""
    return get_job_manager(get_workspace())


def snapshot(run_id: str) -> dict | None:
    """Record, history and live progress of a run, read from disk; None when it is gone."""
    workspace = get_workspace()
    try:
        record = runs.load_run(workspace, run_id)
    except RunError:
        return None
    return {"record": record, "history": runs.load_history(workspace, run_id),
            "progress": runs.load_progress(workspace, run_id)}


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
