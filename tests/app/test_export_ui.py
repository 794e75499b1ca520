"""The export section (shown on the Runs page) in AppTest: build a bundle (a job), download it, see its parity row.

The Runs page opens a run through a dataframe row selection, which AppTest cannot make, so the
section is driven through a one-line script calling ``ui.export_views.render_export_section``.
"""

from __future__ import annotations

import os
import zipfile

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core import runs
from core.jobs import process_start_time
from core.workspace import WORKSPACE_ENV, atomic_write_json
from tests.trained_run import make_tiny_run


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    run = make_tiny_run(tmp_path)
    monkeypatch.setenv(WORKSPACE_ENV, str(run.workspace.root))
    st.cache_resource.clear()
    yield run
    from core.jobs import _MANAGERS

    manager = _MANAGERS.pop(run.workspace.root, None)
    if manager is not None:
        manager.shutdown()
    st.cache_resource.clear()


def _export_script(run_id: str) -> None:
    from core.workspace import Workspace
    from ui.export_views import render_export_section

    render_export_section(Workspace.open(), run_id)


def test_building_a_bundle_offers_the_zip_and_shows_a_passing_parity_row(tiny_run, jobs_in_process):
    at = AppTest.from_function(_export_script, args=(tiny_run.run_id,), default_timeout=300)
    at.run()
    assert not at.exception and not at.dataframe  # nothing built yet: no parity table
    at.button(key=f"export_build_bundle_{tiny_run.run_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    parity = at.dataframe[0].value
    assert parity.to_dict("records") == [{
        **parity.iloc[0].to_dict(), "format": "Bundle", "same class %": 100.0, "result": "pass",
    }]
    assert parity.iloc[0]["max prob diff"] <= 1e-4
    assert parity.iloc[0]["images"] == len(tiny_run.dataset.paths("val"))
    bundle = tiny_run.workspace.tmp_dir / "exports" / tiny_run.run_id / f"{tiny_run.run_id}-bundle.zip"
    with zipfile.ZipFile(bundle) as archive:
        assert {"model.keras", "labels.json", "MODEL_CARD.md", "predict.py"} <= set(archive.namelist())
    assert at.get("download_button")
    assert at.button(key=f"export_build_bundle_{tiny_run.run_id}").label == "Rebuild"
    job = runs.list_runs(tiny_run.workspace, kind="export")[0]  # built by a job, out of the training lists
    assert job["status"] == "done" and job["config"] == {"run_id": tiny_run.run_id, "formats": ["bundle"]}
    assert [r["run_id"] for r in runs.list_runs(tiny_run.workspace)] == [tiny_run.run_id]
    again = AppTest.from_function(_export_script, args=(tiny_run.run_id,), default_timeout=60)
    again.run()  # a refresh: the file the job wrote is offered again, nothing is rebuilt
    assert not again.exception and again.get("download_button") and again.dataframe


def _export_job(tiny_run, status: str, **fields) -> str:
    from core.export_jobs import ExportConfig

    if status == "running":
        fields = {"pid": os.getpid(), "pid_started": process_start_time(os.getpid()), **fields}
    return runs.create_run(tiny_run.workspace, ExportConfig(tiny_run.run_id, ("bundle", "tflite")),
                           classes=tiny_run.dataset.classes, status=status, run_id=runs.new_run_id("export"),
                           **fields)


def test_a_running_export_shows_its_progress_and_stop_instead_of_the_build_buttons(tiny_run):
    job_id = _export_job(tiny_run, "running")
    atomic_write_json(runs.run_dir(tiny_run.workspace, job_id) / "progress.json", {
        "stage": "parity", "format": "tflite", "formats_done": 1, "formats_of": 2, "batch": 4, "of": 9})
    at = AppTest.from_function(_export_script, args=(tiny_run.run_id,), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    bar = at.get("progress")[0]
    assert "Checking TFLite float32 against the in-app model (format 2 of 2): 4 of 9 validation images" in \
        bar.proto.text
    assert not [b for b in at.button if b.label in ("Build", "Rebuild", "Build all formats")]
    next(b for b in at.button if b.label == "Stop").click().run()
    assert runs.stop_requested(runs.run_dir(tiny_run.workspace, job_id))
    runs.update_run(tiny_run.workspace, job_id, status="stopped", error="Stopped; the formats finished before "
                    "Stop are kept.")


def test_a_failed_export_shows_its_one_line_error_and_offers_build_again(tiny_run):
    _export_job(tiny_run, "failed", error="Dataset tiny has no validation images; the parity check needs some.")
    at = AppTest.from_function(_export_script, args=(tiny_run.run_id,), default_timeout=60)
    at.run()
    assert [e.value for e in at.error] == ["Dataset tiny has no validation images; the parity check needs some\\."]
    assert at.button(key=f"export_build_bundle_{tiny_run.run_id}")


def test_a_run_without_a_model_has_nothing_to_export(tiny_run):
    runs.model_path(tiny_run.workspace, tiny_run.run_id).unlink()
    at = AppTest.from_function(_export_script, args=(tiny_run.run_id,), default_timeout=60)
    at.run()
    assert not at.exception and not at.button
    assert "no saved model" in at.caption[0].value
