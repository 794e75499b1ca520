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
from core.run_state import RunStatus
from core.workspace import Workspace, read_json

WORKERS_ENV = "TRANSFER_STUDIO_WORKERS"


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


def require_workers() -> tuple[str, ...]:
    """The configured workers; ConfigError when none are (a run across workers cannot start)."""
    workers = configured_workers()
    if not workers:
        raise ConfigError(f"distribution='multi-worker' needs the worker machines listed in {WORKERS_ENV} "
                          "(host:port,host:port, this server first); set it and restart the server.")
    return workers


@contextlib.contextmanager
def worker_workspace(workspace: Workspace, dataset_id: str, task: ClusterTask | None):
    """The workspace this process trains in: ``workspace`` for the chief (or one process), else a temporary one.

    A temporary workspace sees the shared dataset, and the shared workspace's complete embedding caches of it,
    through links (read only: a worker then skips the embedding pass the chief skips, instead of embedding every
    image again), and keeps everything this worker writes (its run record, embedding cache, model copy); it is
    deleted when the block ends, however it ends.
    """
    if task is None or task.is_chief:
        yield workspace
        return
    root = Path(tempfile.mkdtemp(prefix=f"ts-worker-{task.index}-"))
    try:
        scratch = Workspace.open(root)
        os.symlink(workspace.datasets_dir / dataset_id, scratch.datasets_dir / dataset_id)
        for entry in Path(workspace.features_dir).iterdir():
            meta = read_json(entry / "meta.json", default={}) if entry.is_dir() else {}
            if meta.get("complete") and meta.get("dataset_id") == dataset_id:
                os.symlink(entry, scratch.features_dir / entry.name)
        yield scratch
    finally:
        shutil.rmtree(root, ignore_errors=True)


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on 127.0.0.1 just now (held open together, so they differ)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_local_workers(arguments: list[str], count: int = 2, *, env: dict | None = None, logs: Path | None = None):
    """Start ``python -m core ARGUMENTS`` ``count`` times on this machine, as workers 0.. of one loopback cluster.

    Returns the processes (worker 0, the chief, first). Their output goes to ``logs/worker-N.log`` when given.
    """
    import subprocess
    import sys

    workers = [f"127.0.0.1:{port}" for port in free_ports(count)]
    processes = []
    for index in range(count):
        environ = {**os.environ, **(env or {}), "TF_CONFIG": tf_config(workers, index)}
        output = open(Path(logs) / f"worker-{index}.log", "wb") if logs else subprocess.DEVNULL  # noqa: SIM115
        processes.append(subprocess.Popen([sys.executable, "-m", "core", *arguments], env=environ, stdout=output,
                                          stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2]))
    return processes


JOIN_POLL_S = 2.0


def serve_as_worker(workspace: Workspace, index: int, *, once: bool = False) -> int:
    """Wait for runs the server starts across the workers and train each as worker ``index`` (one at a time).

    Each run trains in a fresh process (TensorFlow's cluster can start only once per process).
    """
    import subprocess
    import sys
    import time

    from core import runs

    workers = configured_workers()
    if not 0 < index < len(workers):
        raise ConfigError(f"--join {index} is not one of the other workers 1..{len(workers) - 1} listed in "
                          f"{WORKERS_ENV}={','.join(workers) or '(unset)'}; set it as on the server.")
    print(f"worker {index} of {len(workers)} ({workers[index]}) waiting for runs in {workspace.root}", flush=True)
    joined: set[str] = set()
    since = time.time()
    while True:
        for record in runs.list_runs(workspace):
            if record["run_id"] in joined or record.get("status") != RunStatus.RUNNING \
                    or record.get("config", {}).get("distribution") != "multi-worker" \
                    or (record.get("started_at") or 0) < since - 60:
                continue
            joined.add(record["run_id"])
            command = [sys.executable, "-m", "core", "worker", record["run_id"], "--workspace", str(workspace.root),
                       "--as-worker", str(index)]
            subprocess.run(command, cwd=Path(__file__).resolve().parents[2], check=False)
            if once:
                return 0
        time.sleep(JOIN_POLL_S)
