"""The server-wide job manager as one visitor sees it, and a run's snapshot, for pages."""

from __future__ import annotations

import streamlit as st

from core import runs
from core.config import TrainConfig
from core.errors import RunError
from core.jobs import JobManager, get_job_manager
from core.run_state import RunSnapshot
from core.workspace import Workspace
from ui.state import get_server_workspace, get_workspace


@st.cache_resource
def server_manager() -> JobManager:
    """One job manager per server process (it owns the worker processes and the queue of every space)."""
    return get_job_manager(get_server_workspace())


class VisitorJobs:
    """The job manager seen from one workspace (a space): its own runs in full, other spaces only as counts."""

    def __init__(self, manager: JobManager, workspace: Workspace):
        self.manager = manager
        self.workspace = workspace

    @property
    def max_jobs(self) -> int:
        return self.manager.max_jobs

    @property
    def version(self) -> int:
        """Changes whenever a run of the server is queued, starts or ends."""
        return self.manager.version

    def submit(self, config: TrainConfig, *, fields: dict | None = None) -> str:
        return self.manager.submit(config, self.workspace, fields=fields)

    def stop(self, run_id: str) -> None:
        self.manager.stop(run_id, self.workspace)

    def status(self) -> tuple[list[dict], list[dict]]:
        """``(running, queued)`` runs of this workspace, from the manager's index (no disk read)."""
        return self.manager.status(self.workspace)

    def server_counts(self) -> tuple[int, int]:
        """Runs training and waiting on the whole server."""
        running, queued = self.manager.status()
        return len(running), len(queued)

    def queue_position(self, run_id: str) -> int | None:
        return self.manager.queue_position(run_id, self.workspace)


def get_manager() -> VisitorJobs:
    """The job manager for the current visitor's workspace."""
    return VisitorJobs(server_manager(), get_workspace())


def snapshot(run_id: str) -> RunSnapshot | None:
    """Record, history and live progress of a run, read from disk; None when it is gone."""
    try:
        return runs.load_snapshot(get_workspace(), run_id)
    except RunError:
        return None


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
