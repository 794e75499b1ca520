"""Export, speed measurement and the embedding map as jobs: run in-process on tiny generated data (progress,
result file, Stop, errors), kept out of the training lists, and one of them through a real worker process."""

from __future__ import annotations

import time
import zipfile

import pytest

from core import runs
from core.errors import ConfigError, LimitError, RunError
from core.export_jobs import ExportConfig, export_file, load_parity
from core.map_jobs import MapConfig, load_map
from core.models.speed import speed_figures
from core.speed_jobs import SpeedConfig
from core.tool_jobs import active_job, execute_tool_job, latest_job, load_result, submit_tool_job
from tests.factories import make_tiny_dataset
from tests.trained_run import make_tiny_run


class Recorder:
    """A stand-in job manager that queues in the run store and runs nothing (``submit`` as the real one does)."""

    def __init__(self, workspace):
        self.workspace = workspace
        self.submitted = []

    def submit(self, config):
        from core.jobs import JobManager

        manager = JobManager(self.workspace)
        manager.dispatch = lambda: None  # queue only
        run_id = manager.submit(config)
        self.submitted.append(run_id)
        return run_id


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("tool-jobs"))


@pytest.fixture
def positions(monkeypatch):
    """``[(stage, batch, of)]`` of every position a job reports (the last is dropped when it finishes)."""
    from core.progress import RunReporter

    seen, original = [], RunReporter.batch

    def spy(self, batch, of, **fields):
        seen.append((self.progress.get("stage"), batch, of))
        return original(self, batch, of, **fields)

    monkeypatch.setattr(RunReporter, "batch", spy)
    return seen


def _queue(workspace, config) -> str:
    return Recorder(workspace).submit(config)


def test_an_export_job_builds_each_format_checks_parity_and_writes_its_result(tiny, positions):
    job_id = _queue(tiny.workspace, ExportConfig(tiny.run_id, formats=("bundle", "tflite")))
    record = execute_tool_job(tiny.workspace, job_id)
    assert record["status"] == "done" and record["kind"] == "export", record.get("error")
    result = load_result(tiny.workspace, job_id)
    assert set(result["formats"]) == {"bundle", "tflite"}
    assert all(item["parity"]["passed"] for item in result["formats"].values())
    bundle = export_file(tiny.workspace, tiny.run_id, "bundle")
    assert result["formats"]["bundle"]["file"] == bundle.name
    with zipfile.ZipFile(bundle) as archive:
        assert "model.keras" in archive.namelist()
    assert set(load_parity(tiny.workspace, tiny.run_id)) == {"bundle", "tflite"}
    images = len(tiny.dataset.paths("val"))
    assert positions[-1] == ("parity", images, images) and ("parity", images, images) in positions[:-1]
    progress = runs.load_progress(tiny.workspace, job_id)
    assert progress["stage"] == "finished" and progress["formats_of"] == 2 and progress["format"] == "tflite"
    assert job_id not in [r["run_id"] for r in runs.list_runs(tiny.workspace)]  # not a training run


def test_a_stopped_export_job_says_so_and_keeps_nothing_half_done(tiny):
    job_id = _queue(tiny.workspace, ExportConfig(tiny.run_id, formats=("savedmodel",)))
    runs.request_stop(tiny.workspace, job_id)
    record = execute_tool_job(tiny.workspace, job_id)
    assert record["status"] == "stopped" and record["error"].startswith("Stopped")
    assert load_result(tiny.workspace, job_id) is None
    assert runs.load_progress(tiny.workspace, job_id)["stopped_by_user"]


def test_bad_jobs_are_refused_before_anything_is_queued(tiny, tmp_path):
    before = len(runs.list_runs(tiny.workspace, kind=None))
    with pytest.raises(RunError, match="does not exist"):
        _queue(tiny.workspace, ExportConfig("no-such-run"))
    with pytest.raises(ConfigError, match="not allowed"):
        _queue(tiny.workspace, SpeedConfig(tiny.dataset.id, "mobilenet_v2", image_size=33))
    with pytest.raises(ConfigError, match="umap"):
        MapConfig(tiny.dataset.id, method="umap")
    assert len(runs.list_runs(tiny.workspace, kind=None)) == before


def test_a_second_start_of_the_same_job_returns_the_one_already_queued(tiny):
    manager = Recorder(tiny.workspace)
    config = SpeedConfig(tiny.dataset.id, "mobilenet_v2", image_size=96, weights="none", runtime="keras")
    first = submit_tool_job(manager, config)
    assert submit_tool_job(manager, config) == first and manager.submitted == [first]
    assert active_job(tiny.workspace, config)["run_id"] == first
    runs.update_run(tiny.workspace, first, status="stopped")  # leave nothing queued for the tests after


def test_a_speed_job_times_batches_and_records_the_figure(workspace, tmp_path, positions):
    dataset = make_tiny_dataset(workspace, tmp_path, per_class=8)
    config = SpeedConfig(dataset.id, "mobilenet_v3_small", image_size=96, weights="none", runtime="keras")
    job_id = _queue(workspace, config)
    record = execute_tool_job(workspace, job_id)
    assert record["status"] == "done", record.get("error")
    result = load_result(workspace, job_id)
    figure = speed_figures(workspace, "mobilenet_v3_small", 96)["keras"]
    assert result["runtime"] == "keras" and result["images_per_s"] == pytest.approx(figure.images_per_s, abs=0.01)
    assert result["measured_on"] == figure.measured_on == f"16 images of {dataset.name}"  # 24: 8 warm up
    assert positions == [("timing", 1, 1)] and runs.load_progress(workspace, job_id)["stage"] == "finished"
    assert latest_job(workspace, config)["run_id"] == job_id


def test_a_map_job_embeds_the_images_with_progress_and_draws_the_map(workspace, tmp_path, positions):
    dataset = make_tiny_dataset(workspace, tmp_path, per_class=6)
    job_id = _queue(workspace, MapConfig(dataset.id, "mobilenet_v3_small", image_size=96, weights="none"))
    record = execute_tool_job(workspace, job_id)
    assert record["status"] == "done", record.get("error")
    assert positions and positions[-1] == ("features", len(dataset.entries), len(dataset.entries))
    result = load_result(workspace, job_id)
    frame = load_map(workspace, job_id, dataset)
    assert result["images"] == len(frame) == len(dataset.entries) and result["flagged"] == int(frame.flagged.sum())
    assert {"x", "y", "flagged", "reason", "source", "path"} <= set(frame.columns)
    assert frame.path.iloc[0] == str(dataset.root / frame.file.iloc[0])


def test_a_map_job_stopped_during_the_features_ends_stopped(workspace, tmp_path):
    dataset = make_tiny_dataset(workspace, tmp_path, per_class=6)
    job_id = _queue(workspace, MapConfig(dataset.id, "mobilenet_v3_small", image_size=96, weights="none"))
    runs.request_stop(workspace, job_id)
    record = execute_tool_job(workspace, job_id)
    assert record["status"] == "stopped" and "Stopped before the map was drawn" in record["error"]
    assert load_map(workspace, job_id, dataset) is None


def test_a_map_of_a_run_of_another_dataset_is_refused_with_the_fix(tiny, tmp_path):
    other = make_tiny_dataset(tiny.workspace, tmp_path, per_class=4)
    with pytest.raises(ConfigError, match="pick a run of this dataset"):
        _queue(tiny.workspace, MapConfig(other.id, image_size=96, weights="none", run_id=tiny.run_id))


def test_a_space_at_its_limit_of_jobs_is_refused(tmp_path, monkeypatch):
    from core.spaces import create_space
    from core.workspace import Workspace

    monkeypatch.setenv("TRANSFER_STUDIO_SPACE_MAX_QUEUED", "1")
    space = create_space(Workspace.open(tmp_path / "server"), owner="pupil")
    dataset = make_tiny_dataset(space, tmp_path, per_class=4)
    manager = Recorder(space)
    submit_tool_job(manager, SpeedConfig(dataset.id, image_size=96, weights="none", runtime="keras"))
    with pytest.raises(LimitError, match="Job limit reached"):
        submit_tool_job(manager, SpeedConfig(dataset.id, image_size=128, weights="none", runtime="keras"))


def test_the_job_manager_runs_a_speed_job_in_a_worker_process(workspace, tmp_path):
    from core.jobs import JobManager

    dataset = make_tiny_dataset(workspace, tmp_path, per_class=4)
    manager = JobManager(workspace)
    manager.start()
    try:
        job_id = submit_tool_job(manager, SpeedConfig(dataset.id, "mobilenet_v3_small", image_size=96,
                                                      weights="none", runtime="keras"))
        deadline = time.time() + 240
        while time.time() < deadline and runs.load_run(workspace, job_id)["status"] in ("queued", "running"):
            time.sleep(1)
    finally:
        manager.shutdown()
    record = runs.load_run(workspace, job_id)
    assert record["status"] == "done", (record.get("error"), (runs.run_dir(workspace, job_id) / "worker.log")
                                        .read_text()[-2000:])
    assert load_result(workspace, job_id)["runtime"] == "keras"
    assert "keras" in speed_figures(workspace, "mobilenet_v3_small", 96)


def test_a_job_whose_process_died_is_interrupted_without_training_advice(workspace, tmp_path):
    from core.jobs import JobManager

    dataset = make_tiny_dataset(workspace, tmp_path, per_class=4)
    job_id = _queue(workspace, SpeedConfig(dataset.id, image_size=96, weights="none", runtime="keras"))
    runs.update_run(workspace, job_id, status="running", pid=2 ** 22 + 1, pid_started="0")  # no such process
    assert JobManager(workspace).recover_orphans() == [job_id]
    record = runs.load_run(workspace, job_id)
    assert record["status"] == "interrupted" and record["error"].startswith("The job's process ended unexpectedly")
    assert "batch size" not in record["error"]
