"""AppTest fixtures: a private workspace per test and fresh Streamlit caches."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.workspace import WORKSPACE_ENV, Workspace

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def app_workspace(tmp_path, monkeypatch):
    """A fresh workspace the app under test will use."""
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "workspace"))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield Workspace.open(tmp_path / "workspace")
    from core.jobs import _MANAGERS

    manager = _MANAGERS.pop(Workspace.open(tmp_path / "workspace").root, None)
    if manager is not None:
        manager.shutdown()
    st.cache_resource.clear()


@pytest.fixture
def sample_dataset(app_workspace):
    from core.data.sample import create_sample_dataset

    return create_sample_dataset(app_workspace)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny finished run (and its workspace) shared by a test module; the app under test uses it."""
    from tests.trained_run import make_tiny_run

    run = make_tiny_run(tmp_path_factory.mktemp("tiny-run"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(WORKSPACE_ENV, str(run.workspace.root))
        st.cache_resource.clear()
        st.cache_data.clear()
        yield run
    st.cache_resource.clear()
    st.cache_data.clear()


def open_page(page: str, timeout: float = 120, **session) -> AppTest:
    """Run ``app.py`` switched to ``pages/<page>.py`` with ``session`` values set."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in session.items():
        at.session_state[key] = value
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rerun_until(at: AppTest, condition, timeout: float = 300, interval: float = 1.0) -> AppTest:
    """Rerun the app until ``condition(at)`` holds (a background job is being watched)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if condition(at):
            return at
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout} s; page shows: {[m.value for m in at.markdown]}")


@pytest.fixture
def through_app_py(monkeypatch):
    """Every run goes through app.py (the door, the sidebar), as with ``scripts/serve.py``: AppTest would
    otherwise run a switched-to page file alone, taking ``pages/`` for Streamlit's legacy multipage folder."""
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture
def jobs_in_process(monkeypatch):
    """Export, speed and map jobs run at once, in this process, when a page queues them (no worker process): the
    page's next run finds them finished. Training and health jobs still start worker processes."""
    from core import jobs, runs
    from core.tool_jobs import execute_tool_job, is_tool_job

    launch = jobs.JobManager._launch

    def run_here(self, record):
        if not is_tool_job(record):
            return launch(self, record)
        workspace = Workspace.open(record["_root"])
        if not runs.transition_run(workspace, record["run_id"], ("queued",), status="running",
                                   started_at=time.time()):
            return False
        execute_tool_job(workspace, record["run_id"])
        return True

    monkeypatch.setattr(jobs.JobManager, "_launch", run_here)
    before = set(jobs._MANAGERS)
    yield
    for root in set(jobs._MANAGERS) - before:
        manager = jobs._MANAGERS.pop(root, None)
        if manager is not None:
            manager.shutdown()
