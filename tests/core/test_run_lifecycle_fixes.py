"""A run's life at its edges: checked before it is recorded, interrupted (not failed) by a shutdown, workers
ended for good, and the feature cache gone with its dataset."""

from __future__ import annotations

import subprocess
import sys
import time

import keras
import pytest

from core import runs
from core.cli import main
from core.config import TrainConfig
from core.data.datasets import delete_dataset
from core.errors import ConfigError, WeightsError
from core.jobs import JobManager
from core.models import weights as weights_module
from core.processes import Interrupted
from core.training.trainer import execute_run
from core.workspace import atomic_write_json
from tests.factories import make_tiny_dataset


@pytest.fixture
def tiny(workspace, tmp_path):
    return make_tiny_dataset(workspace, tmp_path)


def test_a_shutdown_while_weights_load_leaves_the_run_interrupted(workspace, tiny, keras_home, monkeypatch):
    config = TrainConfig(dataset_id=tiny.id, weights="imagenet", image_size=224, epochs=1)
    run_id = runs.create_run(workspace, config, classes=tiny.classes, status="running")

    def shutdown_now(*args, **kwargs):  # the worker's SIGTERM handler raises Interrupted wherever it lands
        raise Interrupted()

    monkeypatch.setattr(keras.applications, "MobileNetV2", shutdown_now)
    record = execute_run(workspace, run_id)
    assert record["status"] == "interrupted", record.get("error")
    assert "shut down" in record["error"]


def test_shutdown_ends_every_worker_even_those_that_ignore_sigterm(workspace):
    manager = JobManager(workspace, max_jobs=2)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); " \
               "time.sleep(120)"
    children = [subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE) for _ in range(2)]
    for child in children:
        child.stdout.readline()  # the handler is installed
    manager._children = {f"run-{i}": child for i, child in enumerate(children)}
    started = time.monotonic()
    manager.shutdown(grace_s=1.0)
    assert all(child.poll() is not None for child in children)
    assert time.monotonic() - started < 20
    for child in children:
        child.stdout.close()


def test_a_mistyped_backbone_leaves_no_run_behind(workspace, tiny, capsys):
    code = main(["train", tiny.id, "--backbone", "mobilenet_v9", "--workspace", str(workspace.root)])
    assert code == 2
    assert capsys.readouterr().err.count("error:") == 1
    assert runs.list_runs(workspace) == []


def test_missing_weights_leave_no_run_behind(workspace, tiny, monkeypatch, capsys):
    # A refused local port: the download fails at once, as on an offline machine.
    monkeypatch.setitem(weights_module._SOURCES, "densenet121", ("http://127.0.0.1:9/", None))
    code = main(["train", tiny.id, "--backbone", "densenet121", "--image-size", "128",
                 "--workspace", str(workspace.root)])
    err = capsys.readouterr().err
    assert code == 2 and "densenet121" in err and err.count("\n") == 1
    assert runs.list_runs(workspace) == []
    manager = JobManager(workspace)
    with pytest.raises(WeightsError):
        manager.submit(TrainConfig(dataset_id=tiny.id, backbone="densenet121", image_size=128))
    with pytest.raises(ConfigError, match="image_size=100"):
        manager.submit(TrainConfig(dataset_id=tiny.id, image_size=100, weights="none"))
    assert runs.list_runs(workspace) == []


def test_deleting_a_dataset_deletes_its_feature_cache(workspace, tiny, tmp_path):
    other = make_tiny_dataset(workspace, tmp_path / "other", per_class=3)
    for name, dataset_id in (("mine", tiny.id), ("theirs", other.id)):
        folder = workspace.features_dir / name
        folder.mkdir()
        atomic_write_json(folder / "meta.json", {"dataset_id": dataset_id, "complete": True, "splits": []})
    delete_dataset(workspace, tiny.id)
    assert sorted(p.name for p in workspace.features_dir.iterdir()) == ["theirs"]
