"""Faults: a full disk while saving, an unwritable workspace, the server dying mid-run."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from core import runs
from core.config import TrainConfig
from core.errors import WorkspaceError
from core.workspace import Workspace
from tests.factories import make_tiny_dataset


def _config(dataset, **overrides):
    values = {"dataset_id": dataset.id, "image_size": 96, "weights": "none", "epochs": 1, "batch_size": 8,
              "early_stopping_patience": 0}
    values.update(overrides)
    return TrainConfig(**values)


def test_a_full_disk_while_saving_fails_the_run_with_a_clear_message(workspace, tmp_path, monkeypatch):
    import keras

    from core.training.trainer import train_model

    dataset = make_tiny_dataset(workspace, tmp_path)

    def no_space(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", no_space)
    record = train_model(_config(dataset), workspace)
    assert record["status"] == "failed"
    assert "No space left on device" in record["error"] and "Free some disk space" in record["error"]
    assert not list(runs.run_dir(workspace, record["run_id"]).glob("*.keras"))


def test_a_workspace_that_cannot_be_created_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the workspace should be")
    with pytest.raises(WorkspaceError, match="TRANSFER_STUDIO_WORKSPACE"):
        Workspace.open(blocker / "workspace")


def test_a_server_dying_mid_run_leaves_the_run_interrupted(workspace, tmp_path):
    dataset = make_tiny_dataset(workspace, tmp_path)
    server = textwrap.dedent(f"""
        import time
        from core.config import TrainConfig
        from core.jobs import JobManager
        from core.workspace import Workspace
        manager = JobManager(Workspace.open({str(workspace.root)!r}))
        manager.start()
        run_id = manager.submit(TrainConfig(dataset_id={dataset.id!r}, image_size=96, weights="none",
                                            epochs=1000, batch_size=8, early_stopping_patience=0,
                                            head="keras"))
        print(run_id, flush=True)
        time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
    run_id = process.stdout.readline().strip()
    deadline = time.time() + 300
    while not runs.load_history(workspace, run_id) and time.time() < deadline:
        time.sleep(0.5)
    worker_pid = runs.load_run(workspace, run_id)["pid"]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.time() + 60
    while runs.load_run(workspace, run_id)["status"] == "running" and time.time() < deadline:
        time.sleep(0.5)
    record = runs.load_run(workspace, run_id)
    assert record["status"] == "interrupted"
    assert "server" in record["error"]
    deadline = time.time() + 30
    while _alive(worker_pid) and time.time() < deadline:
        time.sleep(0.5)
    assert not _alive(worker_pid), "the worker outlived the server"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
