"""A run's state as types: statuses named once, snapshots read from the JSON on disk as it is, the stop control."""

from __future__ import annotations

import json

import pytest

from core import runs
from core.config import TrainConfig
from core.errors import RunError
from core.progress import RunReporter
from core.run_state import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    RESULT_STATUSES,
    RunSnapshot,
    RunStatus,
    StopControl,
    as_status,
)
from core.workspace import read_json

# What an older version left on disk: no kind, no progress file, no history yet.
OLD_RECORD = {"run_id": "20261122-101530-mobilenet_v2-3fa1", "created_at": 1.0, "status": "done",
              "config": {"dataset_id": "d", "backbone": "mobilenet_v2"}, "dataset_id": "d", "classes": ["a", "b"],
              "best_val_accuracy": 0.9, "error": None}


def test_every_status_is_the_string_run_json_holds():
    assert [status.value for status in RunStatus] == ["queued", "running", "done", "stopped", "failed",
                                                     "interrupted"]
    assert json.dumps({"status": RunStatus.DONE}) == '{"status": "done"}'
    assert RunStatus.STOPPED == "stopped" and f"{RunStatus.QUEUED}" == "queued"


def test_active_and_final_statuses_split_them_all():
    assert set(ACTIVE_STATUSES) | set(FINAL_STATUSES) == set(RunStatus)
    assert not set(ACTIVE_STATUSES) & set(FINAL_STATUSES)
    assert set(RESULT_STATUSES) <= set(FINAL_STATUSES)
    assert runs.ACTIVE_STATUSES is ACTIVE_STATUSES


def test_an_unknown_status_is_none_rather_than_an_error():
    assert as_status("done") is RunStatus.DONE and as_status("exploded") is None and as_status(None) is None


def test_a_snapshot_reads_the_three_files_as_the_worker_wrote_them(workspace):
    run_id = runs.create_run(workspace, TrainConfig(dataset_id="d", weights="none"), classes=["a", "b"],
                             status=RunStatus.RUNNING)
    folder = runs.run_dir(workspace, run_id)
    reporter = RunReporter(folder)
    reporter.stage("phase 1", total_epochs=3)
    reporter.epoch({"epoch": 1, "phase": 1, "loss": 0.5, "accuracy": 0.75})
    reporter.batch(8, 8, epoch=2)  # a finished stage is written at once
    snapshot = runs.load_snapshot(workspace, run_id)
    assert snapshot.to_dict() == {"record": read_json(folder / "run.json"),
                                  "progress": read_json(folder / "progress.json"),
                                  "history": read_json(folder / "history.json")}
    assert (snapshot.run_id, snapshot.status, snapshot.kind, snapshot.is_active) == (run_id, "running", "train", True)
    assert (snapshot.stage, snapshot.in_phase, snapshot.epoch, snapshot.total_epochs) == ("phase 1", True, 2, 3)
    assert (snapshot.batch, snapshot.of, snapshot.fraction) == (8, 8, 1.0)
    assert snapshot.eta is not None and snapshot.last_epoch["loss"] == 0.5
    assert read_json(folder / "run.json")["status"] == "running"  # a plain string on disk, as before


def test_an_old_run_without_progress_loads_with_sensible_defaults(tmp_path):
    folder = tmp_path / OLD_RECORD["run_id"]
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps(OLD_RECORD))
    snapshot = RunSnapshot.read(folder)
    assert snapshot.record == OLD_RECORD and snapshot.progress == {} and snapshot.history == []
    assert (snapshot.status, snapshot.kind, snapshot.has_result, snapshot.is_active) == ("done", "train", True, False)
    assert (snapshot.stage, snapshot.fraction, snapshot.eta, snapshot.stopped_by_user) == ("starting", None, None,
                                                                                            False)
    assert RunSnapshot.from_dict(snapshot.to_dict()) == snapshot


def test_a_stopped_run_says_where_stop_came(tmp_path):
    snapshot = RunSnapshot({"status": "stopped", "stopped_at": {"stage": "phase 2", "epoch": 3}},
                           {"stopped_by_user": True, "stopped_at": {"stage": "phase 2", "epoch": 3, "batch": 1}})
    assert snapshot.has_result and snapshot.stopped_by_user and snapshot.stopped_at == {"stage": "phase 2", "epoch": 3}


def test_a_snapshot_is_frozen():
    snapshot = RunSnapshot(dict(OLD_RECORD))
    with pytest.raises(AttributeError):
        snapshot.record = {}


def test_a_missing_run_has_no_snapshot(workspace, tmp_path):
    assert RunSnapshot.read(tmp_path / "nothing") is None
    with pytest.raises(RunError, match="does not exist"):
        runs.load_snapshot(workspace, "20260101-000000-x-0000")


def test_create_run_refuses_a_status_it_does_not_know(workspace):
    with pytest.raises(ValueError, match="exploded"):
        runs.create_run(workspace, TrainConfig(dataset_id="d"), classes=["a"], status="exploded")


def test_the_reporter_keeps_its_stop_decision_in_a_stop_control(tmp_path):
    reporter = RunReporter(tmp_path)
    assert reporter.control == StopControl() and not reporter.shares_stop
    reporter.share_stop(lambda flag: True)
    assert reporter.control.shared and reporter.shares_stop and not reporter.control.agreed
    assert reporter.sync_stop() is True
    assert reporter.control.agreed and reporter.progress["stopped_by_user"] is True
