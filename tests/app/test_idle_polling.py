"""Idle pages cost nothing: no fragment reruns by itself unless a run is queued or training, and a live view
re-reads a run only when one of its files changed.

A fragment reruns by itself only when it is registered with ``run_every``; a spy on ``st.fragment`` counts those
registrations (none means the browser never asks for a rerun)."""

from __future__ import annotations

import os

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core import runs
from core.config import TrainConfig
from core.jobs import _MANAGERS, process_start_time
from core.workspace import atomic_write_json
from tests.app.conftest import APP
from ui.live_runs import live_runs

pytestmark = pytest.mark.usefixtures("through_app_py")


@pytest.fixture
def polling(monkeypatch):
    """``[(fragment function name, run_every)]`` of every fragment the app registers at run time."""
    calls = []
    real = st.fragment

    def spy(func=None, **options):
        calls.append((getattr(func, "__name__", None), options.get("run_every")))
        return real(func, **options)

    monkeypatch.setattr(st, "fragment", spy)
    return calls


def _history(epochs: int) -> list[dict]:
    return [{"epoch": i + 1, "phase": 1, "loss": 1.0 / (i + 1), "accuracy": 0.5 + i / 20, "val_loss": 1.0,
             "val_accuracy": 0.5} for i in range(epochs)]


def _run(workspace, dataset, status: str, epochs: int = 2) -> str:
    fields = {"pid": os.getpid(), "pid_started": process_start_time(os.getpid())} if status == "running" else {}
    run_id = runs.create_run(workspace, TrainConfig(dataset_id=dataset.id, weights="none"), classes=dataset.classes,
                             status=status, **fields)
    if status == "done":
        runs.update_run(workspace, run_id, best_val_accuracy=0.5, epochs_run=epochs, timings={"total_s": 2.0})
    atomic_write_json(runs.run_dir(workspace, run_id) / "history.json", _history(epochs))
    return run_id


def open_page(page: str, **session) -> AppTest:
    """The app with ``session`` values, first on its default page (through app.py), then on ``page``."""
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _polled(calls) -> list[tuple]:
    return [call for call in calls if call[1]]


def test_nothing_polls_when_nothing_is_active(app_workspace, sample_dataset, polling):
    run_id = _run(app_workspace, sample_dataset, "done")
    for page in ("train", "data", "runs", "evaluate"):
        at = open_page(page, dataset=sample_dataset.id, run=run_id)
        at.run()
    assert any(run_id in caption.value for caption in at.sidebar.caption)
    assert {name for name, _ in polling} >= {"_live_view"} or polling == []
    assert _polled(polling) == []


def test_a_training_run_polls_its_live_view_and_the_sidebar_until_it_ends(app_workspace, sample_dataset, polling):
    run_id = _run(app_workspace, sample_dataset, "running")
    at = open_page("train", dataset=sample_dataset.id, run=run_id)
    assert ("_live_view", 1.0) in _polled(polling) and ("_polled_status", 2.0) in _polled(polling)
    runs.update_run(app_workspace, run_id, status="done", best_val_accuracy=0.5, epochs_run=2,
                    timings={"total_s": 2.0})
    _MANAGERS[app_workspace.root].dispatch()  # what the dispatcher does within 0.5 s of a worker's end
    polling.clear()
    at.run()
    assert any("Finished" in s.value for s in at.success)
    assert _polled(polling) == []


def _charts(at: AppTest) -> list[tuple]:
    return [(chart.proto.spec, chart.proto.data.data, [(d.name, d.data.data) for d in chart.proto.datasets])
            for chart in at.get("vega_lite_chart")]


def test_the_live_view_rereads_a_run_only_when_its_files_changed(app_workspace, sample_dataset):
    run_id = _run(app_workspace, sample_dataset, "running", epochs=2)
    at = open_page("train", dataset=sample_dataset.id, run=run_id)
    reads = dict(live_runs().reads)
    for _ in range(3):
        at.run()
    assert live_runs().reads == reads
    atomic_write_json(runs.run_dir(app_workspace, run_id) / "history.json", _history(3))
    at.run()
    assert live_runs().reads["history.json"] == reads["history.json"] + 1
    assert live_runs().reads["run.json"] == reads["run.json"]


def test_two_tabs_watching_one_run_parse_its_history_and_build_its_curves_once_per_change(
        app_workspace, sample_dataset):
    run_id = _run(app_workspace, sample_dataset, "running", epochs=2)
    tabs = [open_page("train", dataset=sample_dataset.id, run=run_id) for _ in range(2)]
    assert live_runs().reads["history.json"] == 1 and live_runs().builds == 1
    for _ in range(2):
        for at in tabs:
            at.run()
    assert live_runs().reads["history.json"] == 1 and live_runs().builds == 1
    atomic_write_json(runs.run_dir(app_workspace, run_id) / "history.json", _history(3))
    for at in tabs:
        at.run()
    assert live_runs().reads["history.json"] == 2 and live_runs().builds == 2
    assert _charts(tabs[0]) == _charts(tabs[1]) and len(_charts(tabs[0])) == 2


def test_progress_that_moves_does_not_rebuild_the_curves(app_workspace, sample_dataset):
    run_id = _run(app_workspace, sample_dataset, "running", epochs=2)
    folder = runs.run_dir(app_workspace, run_id)
    atomic_write_json(folder / "progress.json", {"stage": "phase 1", "epoch": 3, "total_epochs": 9, "batch": 1,
                                                 "of": 4, "eta": 5.0})
    at = open_page("train", dataset=sample_dataset.id, run=run_id)
    charts, builds = _charts(at), live_runs().builds
    atomic_write_json(folder / "progress.json", {"stage": "phase 1", "epoch": 3, "total_epochs": 9, "batch": 2,
                                                 "of": 4, "eta": 4.0})
    at.run()
    assert "batch 2 of 4" in at.get("progress")[0].proto.text
    assert live_runs().builds == builds and _charts(at) == charts  # the same bytes: nothing for a tab to redraw
    assert all(datasets and not data for _, data, datasets in charts)  # points travel as prebuilt Arrow
