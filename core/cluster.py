"""Several worker processes training one run: who they are (``TF_CONFIG``), which one writes, and the
server setting that lists the worker machines.

Every worker runs the same command with its own ``TF_CONFIG``. The chief (the ``chief`` task, else worker 0)
trains in the real workspace and alone writes the run record, history, checkpoints and model; any other worker
reads the dataset from the same (shared) workspace but writes only into a temporary folder of its own, deleted
when it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError
from core.workspace import Workspace

WORKERS_ENV = "TRANSFER_STUDIO_WORKERS"
WORKER_INDEX_ENV = "TRANSFER_STUDIO_WORKER_INDEX"


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in the cluster ``TF_CONFIG`` describes."""

    workers: tuple[str, ...]
    task_type: str
    index: int

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0)

    def describe(self) -> dict:
        return {"workers": list(self.workers), "task": f"{self.task_type}:{self.index}", "chief": self.is_chief}


def cluster_task(environ=None) -> ClusterTask | None:
    """This process's task from ``TF_CONFIG``; None when it names no workers."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
        workers = tuple(config["cluster"]["worker"])
        task = config.get("task", {})
        return ClusterTask(workers=workers, task_type=task.get("type", "worker"), index=int(task.get("index", 0)))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"TF_CONFIG={raw!r} is not a cluster description: {exc}. Expected "
                          '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
                          '"index": 0}}.') from exc


def tf_config(workers, index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` of ``workers`` (``host:port`` strings)."""
    return json.dumps({"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": int(index)}})


def configured_workers(environ=None) -> tuple[str, ...]:
    """Worker hosts from the server setting ``TRANSFER_STUDIO_WORKERS`` (``host:port`` separated by commas).

    The first is this server (the chief). Empty when unset: then nothing changes for one machine.
    """
    raw = (os.environ if environ is None else environ).get(WORKERS_ENV, "")
    hosts = tuple(part.strip() for part in raw.split(",") if part.strip())
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ConfigError(f"{WORKERS_ENV} entry {host!r} is not host:port. List the workers as "
                              "host1:12345,host2:12345 (this server first).")
    if len(hosts) == 1:
        raise ConfigError(f"{WORKERS_ENV}={raw!r} names one worker; list this server and at least one more.")
    return hosts


@contextlib.contextmanager
def worker_workspace(workspace: Workspace, dataset_id: str, task: ClusterTask | None):
    """The workspace this process trains in: ``workspace`` for the chief (or one process), else a temporary one.

    A temporary workspace sees the shared dataset through a link and keeps everything this worker writes (its
    run record, embedding cache, model copy); it is deleted when the block ends, however it ends.
    """
    if task is None or task.is_chief:
        yield workspace
        return
    root = Path(tempfile.mkdtemp(prefix=f"ts-worker-{task.index}-"))
    try:
        scratch = Workspace.open(root)
        os.symlink(workspace.datasets_dir / dataset_id, scratch.datasets_dir / dataset_id)
        yield scratch
    finally:
        shutil.rmtree(root, ignore_errors=True)
