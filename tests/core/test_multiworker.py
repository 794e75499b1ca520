"""Training across two worker processes on 127.0.0.1 under a real MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest

from core import runs
from core.data.sample import create_sample_dataset
from core.errors import ConfigError
from core.training.cluster import (
    ClusterTask,
    cluster_task,
    configured_workers,
    start_local_workers,
    tf_config,
    worker_workspace,
)

SMALL = ["--backbone", "mobilenet_v3_small", "--image-size", "96", "--weights", "none", "--strategy", "fine-tune",
         "--head", "keras", "--fine-tune-layers", "8", "--early-stopping-patience", "0", "--batch-size", "32"]


def _train_args(workspace, dataset_id, *extra):
    return ["train", dataset_id, "--workspace", str(workspace.root), "--distribution", "multi-worker", *SMALL,
            *extra]


def _wait(processes, timeout):
    deadline = time.monotonic() + timeout
    for process in processes:
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    return [process.returncode for process in processes]


def _logs(tmp_path):
    return "\n".join(path.read_text(errors="replace")[-1500:] for path in sorted(tmp_path.glob("worker-*.log")))


def test_two_workers_train_the_sample_and_only_the_chief_saves(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    dataset = create_sample_dataset(workspace)
    processes = start_local_workers(_train_args(workspace, dataset.id, "--epochs", "1", "--fine-tune-epochs", "1"),
                                    logs=tmp_path, env={"TRANSFER_STUDIO_COLLECTIVE_TIMEOUT_S": "120"})
    try:
        assert _wait(processes, 400) == [0, 0], _logs(tmp_path)
    finally:
        for process in processes:
            process.kill()
    (run_id,) = [record["run_id"] for record in runs.list_runs(workspace)]  # one run: the chief's
    record = runs.load_run(workspace, run_id)
    assert record["status"] == "done", record.get("error")
    assert record["distribution"] == {"strategy": "MultiWorkerMirroredStrategy", "replicas": 2, "workers": 2,
                                      "global_batch": 32, "per_worker_batch": 16, "per_replica_batch": 16}
    assert record["cluster"]["chief"] is True and len(record["cluster"]["workers"]) == 2
    images = sum(len(dataset.split_entries(split)) for split in dataset.splits)
    assert record["extraction"]["workers"] == 2  # the embedding pass was split: the chief embedded every second
    assert record["extraction"]["worker_images"] == (images + 1) // 2
    history = runs.load_history(workspace, run_id)
    assert [(h["epoch"], h["phase"]) for h in history] == [(1, 1), (2, 2)]
    assert all(0.0 <= h["val_accuracy"] <= 1.0 and np.isfinite(h["loss"]) for h in history)
    model = runs.load_run_model(workspace, run_id)
    probabilities = model.predict(np.zeros((2, 96, 96, 3), "float32"), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert len(list(workspace.root.rglob("*.keras"))) == 1
    assert list((tmp_path / "tmp").iterdir()) == []  # worker 1's temporary workspace is gone
    assert "the chief saved the model" in (tmp_path / "worker-1.log").read_text()


def test_a_killed_worker_fails_the_run_with_a_clear_message_in_bounded_time(workspace, tmp_path):
    dataset = create_sample_dataset(workspace)
    processes = start_local_workers(_train_args(workspace, dataset.id, "--epochs", "1", "--fine-tune-epochs", "200"),
                                    logs=tmp_path, env={"TRANSFER_STUDIO_COLLECTIVE_TIMEOUT_S": "60"})
    try:
        _wait_for_phase_two(workspace, processes, tmp_path)
        time.sleep(3)  # inside the fine-tune phase's steps
        os.kill(processes[1].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        processes[0].wait(timeout=180)
        waited = time.monotonic() - killed_at
    finally:
        for process in processes:
            process.kill()
    assert processes[0].returncode == 2, _logs(tmp_path)
    (record,) = runs.list_runs(workspace)
    assert record["status"] == "failed"
    assert "worker stopped answering (worker 1 at 127.0.0.1:" in record["error"], record["error"]
    assert "error: A training worker stopped answering" in (tmp_path / "worker-0.log").read_text()
    assert waited < 180


def _wait_for_phase_two(workspace, processes, tmp_path, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in workspace.runs_dir.glob("*/progress.json"):
            if json.loads(path.read_text() or "{}").get("stage") == "phase 2":
                return path.parent.name
        assert processes[0].poll() is None, _logs(tmp_path)
        time.sleep(1)
    raise AssertionError(f"no phase 2 in {timeout} s: {_logs(tmp_path)}")


def test_stop_on_the_chief_ends_every_worker_after_the_same_step_and_the_chief_saves_once(workspace, tmp_path):
    dataset = create_sample_dataset(workspace)
    processes = start_local_workers(_train_args(workspace, dataset.id, "--epochs", "1", "--fine-tune-epochs", "200"),
                                    logs=tmp_path, env={"TRANSFER_STUDIO_COLLECTIVE_TIMEOUT_S": "120"})
    try:
        run_id = _wait_for_phase_two(workspace, processes, tmp_path)
        time.sleep(3)  # inside the fine-tune phase's steps
        runs.request_stop(workspace, run_id)
        assert _wait(processes, 240) == [0, 0], _logs(tmp_path)
    finally:
        for process in processes:
            process.kill()
    record = runs.load_run(workspace, run_id)
    assert record["status"] == "stopped", record.get("error")
    assert record["stopped_at"]["stage"] == "phase 2" and record["stopped_at"]["phase"] == 2, record["stopped_at"]
    history = runs.load_history(workspace, run_id)
    assert history[-1]["partial"] is True and len(history) < 201
    assert len(list(workspace.root.rglob("*.keras"))) == 1  # the chief's model, saved once
    model = runs.load_run_model(workspace, run_id)
    probabilities = model.predict(np.zeros((1, 96, 96, 3), "float32"), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert "worker 1 of 2 stopped" in (tmp_path / "worker-1.log").read_text()


def test_a_stop_before_the_embedding_pass_is_agreed_at_its_first_batch_by_both_workers(workspace, tmp_path):
    import subprocess
    import sys

    from core.config import TrainConfig
    from core.training.cluster import WORKERS_ENV, free_ports

    dataset = create_sample_dataset(workspace)
    config = TrainConfig(dataset_id=dataset.id, backbone="mobilenet_v3_small", image_size=96, weights="none",
                         strategy="fine-tune", head="keras", fine_tune_layers=8, early_stopping_patience=0,
                         batch_size=32, epochs=1, fine_tune_epochs=1, distribution="multi-worker")
    run_id = runs.create_run(workspace, config, classes=dataset.classes, status="queued")
    runs.request_stop(workspace, run_id)  # before either starts: the first point both pass is the first batch
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    environ = {**os.environ, WORKERS_ENV: ",".join(workers), "TRANSFER_STUDIO_COLLECTIVE_TIMEOUT_S": "120"}
    command = [sys.executable, "-m", "core", "worker", run_id, "--workspace", str(workspace.root)]
    processes = [subprocess.Popen(command, env={**environ, "TF_CONFIG": tf_config(workers, 0)},  # as the server
                                  stdout=open(tmp_path / "worker-0.log", "wb"), stderr=subprocess.STDOUT),  # noqa: SIM115
                 subprocess.Popen([*command, "--as-worker", "1"], env=environ,
                                  stdout=open(tmp_path / "worker-1.log", "wb"), stderr=subprocess.STDOUT)]  # noqa: SIM115
    try:
        assert _wait(processes, 400) == [0, 0], _logs(tmp_path)
    finally:
        for process in processes:
            process.kill()
    record = runs.load_run(workspace, run_id)
    assert record["status"] == "stopped", record.get("error")
    assert record["stopped_at"]["stage"] == "features" and "batch" not in record["stopped_at"], record["stopped_at"]
    assert list(workspace.root.rglob("*.keras")) == [] and runs.load_history(workspace, run_id) == []
    assert f"for run {run_id}: stopped" in (tmp_path / "worker-1.log").read_text()


def test_tf_config_names_the_chief_and_the_others():
    workers = ("10.0.0.1:2222", "10.0.0.2:2222")
    first = cluster_task({"TF_CONFIG": tf_config(workers, 0)})
    second = cluster_task({"TF_CONFIG": tf_config(workers, 1)})
    assert first == ClusterTask(workers, "worker", 0) and first.is_chief
    assert not second.is_chief
    assert cluster_task({}) is None
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        cluster_task({"TF_CONFIG": "{not json"})


def test_workers_setting_lists_hosts_and_refuses_a_malformed_one():
    assert configured_workers({}) == ()
    hosts = configured_workers({"TRANSFER_STUDIO_WORKERS": "a:1, b:2"})
    assert hosts == ("a:1", "b:2")
    with pytest.raises(ConfigError, match="host:port"):
        configured_workers({"TRANSFER_STUDIO_WORKERS": "a:1,b"})


def test_a_non_chief_worker_writes_only_into_a_folder_it_deletes(workspace, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    from core.models.features import cached_features

    dataset = create_sample_dataset(workspace)
    for key, dataset_id in (("this", dataset.id), ("other", "another-dataset")):  # the chief's caches
        (workspace.features_dir / key).mkdir()
        np.save(workspace.features_dir / key / "train.npy", np.ones((3, 4), np.float32))
        (workspace.features_dir / key / "meta.json").write_text(json.dumps(
            {"complete": True, "dataset_id": dataset_id, "splits": ["train"]}))
    before = sorted(p.relative_to(workspace.root) for p in workspace.root.rglob("*"))
    task = ClusterTask(("a:1", "b:2"), "worker", 1)
    with worker_workspace(workspace, dataset.id, task) as scratch:
        assert scratch.root != workspace.root
        from core.data.datasets import load_dataset

        assert load_dataset(scratch, dataset.id).classes == dataset.classes
        assert cached_features(scratch, "this")["train"].shape == (3, 4)  # read where it is: no second pass
        assert cached_features(scratch, "other") is None
        (scratch.runs_dir / "x").mkdir()
    assert sorted(p.relative_to(workspace.root) for p in workspace.root.rglob("*")) == before
    assert list((tmp_path / "tmp").iterdir()) == []
