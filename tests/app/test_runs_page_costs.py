"""The Runs page reads no download into memory until it is asked for, and shows error text literally."""

from __future__ import annotations

import pathlib

from core import runs
from core.config import TrainConfig
from tests.app.conftest import open_page
from ui.text import escape_markdown


def _run_with_model(workspace, dataset, **changes) -> str:
    run_id = runs.create_run(workspace, TrainConfig(dataset_id=dataset.id, weights="none"), classes=dataset.classes,
                             status="done")
    runs.model_path(workspace, run_id).write_bytes(b"pretend model " * 1000)
    runs.update_run(workspace, run_id, **changes)
    return run_id


def test_the_model_download_is_not_read_on_a_rerun(app_workspace, sample_dataset, monkeypatch):
    run_id = _run_with_model(app_workspace, sample_dataset)
    read = []
    real = pathlib.Path.read_bytes
    monkeypatch.setattr(pathlib.Path, "read_bytes", lambda self: read.append(self.name) or real(self))
    at = open_page("runs", runs_single=run_id)
    assert not at.exception
    assert any(button.label == "Download model (.keras)" for button in at.get("download_button"))
    assert "model.keras" not in read


def test_a_run_error_with_markdown_in_it_is_shown_literally(app_workspace, sample_dataset):
    message = "Cannot read **bold** :red[class] `x`."
    run_id = _run_with_model(app_workspace, sample_dataset, status="failed", error=message)
    at = open_page("runs", runs_single=run_id)
    assert [error.value for error in at.error] == [escape_markdown(message)]
