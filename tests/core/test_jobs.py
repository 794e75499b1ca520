"""Background jobs: worker processes, the queue, stop, crashes and orphans."""

from __future__ import annotations

import os
import signal
import time

import pytest

from core import runs
from core.config import TrainConfig
from core.jobs import JobManager
from tests.factories import make_tiny_dataset


@pytest.fixture
def tiny(workspace, tmp_path):
    return make_tiny_dataset(workspace, tmp_path)


@pytest.fixture
def manager(workspace):
    manager = JobManager(workspace, max_jobs=1)
    manager.start()
    yield manager
    manager.shutdown()


def _config(dataset, **overrides):
    from core.models.backbones import get_backbone

    values = {"dataset_id": dataset.id, "image_size": min(get_backbone("mobilenet_v2").allowed_sizes),
              "weights": "none", "strategy": "feature-extraction", "epochs": 1, "batch_size": 8,
              "early_stopping_patience": 0, "head": "keras"}  # a Keras head: epochs=1000 makes a long run
    values.update(overrides)
    return TrainConfig(**values)


def _wait(workspace, run_id, condition, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        record = runs.load_run(workspace, run_id)
        if condition(record):
            return record
        time.sleep(0.2)
    raise AssertionError(f"timed out; last record: {runs.load_run(workspace, run_id)}")


def test_queued_jobs_run_one_at_a_time_in_order(workspace, tiny, manager):
    first = manager.submit(_config(tiny))
    second = manager.submit(_config(tiny, seed=1))
    assert manager.queue_position(second) == 1
    done_first = _wait(workspace, first, lambda r: r["status"] in runs.FINAL_STATUSES)
    done_second = _wait(workspace, second, lambda r: r["status"] in runs.FINAL_STATUSES)
    assert done_first["status"] == "done", done_first.get("error")
    assert done_second["status"] == "done", done_second.get("error")
    assert done_second["started_at"] >= done_first["finished_at"]
    assert done_first["pid"] != os.getpid()


def test_stop_ends_a_running_job_and_keeps_its_model(workspace, tiny, manager):
    run_id = manager.submit(_config(tiny, epochs=1000))
    _wait(workspace, run_id, lambda r: len(runs.load_history(workspace, r["run_id"])) >= 1)
    manager.stop(run_id)
    record = _wait(workspace, run_id, lambda r: r["status"] in runs.FINAL_STATUSES, timeout=60)
    assert record["status"] == "stopped"
    assert record["epochs_run"] < 1000
    assert runs.model_path(workspace, run_id).exists()


def test_stop_cancels_a_queued_job(workspace, tiny, manager):
    first = manager.submit(_config(tiny, epochs=1000))
    second = manager.submit(_config(tiny))
    manager.stop(second)
    assert runs.load_run(workspace, second)["status"] == "stopped"
    manager.stop(first)
    _wait(workspace, first, lambda r: r["status"] in runs.FINAL_STATUSES)
    time.sleep(1.5)
    assert runs.load_run(workspace, second)["status"] == "stopped"


def test_a_killed_worker_leaves_an_interrupted_run_with_a_message(workspace, tiny, manager):
    run_id = manager.submit(_config(tiny, epochs=1000))
    record = _wait(workspace, run_id, lambda r: r.get("pid") and runs.load_progress(workspace, run_id).get("batch"))
    os.kill(record["pid"], signal.SIGKILL)
    record = _wait(workspace, run_id, lambda r: r["status"] in runs.FINAL_STATUSES, timeout=30)
    assert record["status"] == "interrupted"
    assert "ended unexpectedly" in record["error"]
    later = manager.submit(_config(tiny))
    assert _wait(workspace, later, lambda r: r["status"] in runs.FINAL_STATUSES)["status"] == "done"


def test_startup_marks_orphaned_running_runs_interrupted(workspace, tiny):
    run_id = runs.create_run(workspace, _config(tiny), classes=tiny.classes, status="running")
    runs.update_run(workspace, run_id, pid=2**22 + 12345)
    manager = JobManager(workspace)
    try:
        manager.start()
        assert runs.load_run(workspace, run_id)["status"] == "interrupted"
    finally:
        manager.shutdown()


def test_two_sessions_deleting_the_same_run_do_not_crash(workspace, tiny):
    run_id = runs.create_run(workspace, _config(tiny), classes=tiny.classes, status="done")
    exports = workspace.tmp_dir / "exports" / run_id
    exports.mkdir(parents=True)
    (exports / "bundle.zip").write_bytes(b"zip")
    assert runs.delete_run(workspace, run_id) is True
    assert not exports.exists()
    assert runs.delete_run(workspace, run_id) is False
    assert runs.list_runs(workspace) == []


def test_startup_leaves_a_run_trained_by_another_live_process_alone(workspace, tiny):
    from core.jobs import process_start_time

    run_id = runs.create_run(workspace, _config(tiny), classes=tiny.classes, status="running", pid=os.getpid(),
                             pid_started=process_start_time(os.getpid()))
    JobManager(workspace).recover_orphans()
    assert runs.load_run(workspace, run_id)["status"] == "running"
    runs.update_run(workspace, run_id, pid_started="1")  # the same pid, but a different process
    JobManager(workspace).recover_orphans()
    assert runs.load_run(workspace, run_id)["status"] == "interrupted"
