"""Background training jobs: a server-wide queue and worker processes.

A job is a run in the run store. ``JobManager.submit`` records it as ``queued``; a dispatcher
thread starts queued runs in order, each in its own ``python -m core worker`` process, while fewer
than ``max_jobs`` run (default 1, ``$TRANSFER_STUDIO_MAX_JOBS``). A crash or out-of-memory in a
worker cannot take the server down; the dispatcher notices a dead worker and marks its run
interrupted. Workers end themselves when the server process goes away, and on start-up the
manager marks runs left ``running`` by a previous server as interrupted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from core import runs
from core.config import TrainConfig
from core.workspace import Workspace

MAX_JOBS_ENV = "TRANSFER_STUDIO_MAX_JOBS"
POLL_INTERVAL_S = 0.5
PROJECT_ROOT = Path(__file__).resolve().parents[1]

_MANAGERS: dict[Path, JobManager] = {}
_MANAGERS_LOCK = threading.Lock()


def get_job_manager(workspace: Workspace, max_jobs: int | None = None) -> JobManager:
    """The one manager of ``workspace`` in this process (started on first use)."""
    with _MANAGERS_LOCK:
        manager = _MANAGERS.get(workspace.root)
        if manager is None:
            manager = JobManager(workspace, max_jobs=max_jobs)
            _MANAGERS[workspace.root] = manager
            manager.start()
        return manager


class JobManager:
    """Runs queued runs in worker processes, at most ``max_jobs`` at once.

    Args:
        workspace: The workspace whose runs it manages.
        max_jobs: Concurrent workers; default ``$TRANSFER_STUDIO_MAX_JOBS`` or 1.
    """

    def __init__(self, workspace: Workspace, max_jobs: int | None = None):
        self.workspace = workspace
        self.max_jobs = max_jobs or int(os.environ.get(MAX_JOBS_ENV, "1"))
        self._children: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Mark orphans from an earlier server interrupted, then start dispatching."""
        self.recover_orphans()
        self._thread = threading.Thread(target=self._loop, name="transfer-studio-dispatcher", daemon=True)
        self._thread.start()

    def shutdown(self, grace_s: float = 30.0) -> None:
        """Stop dispatching and end every running worker (tests and server shutdown).

        Each worker is asked to end (SIGTERM: its run is recorded as interrupted); those still running after
        ``grace_s`` seconds in all are killed, so none is left behind.
        """
        self._stopping.set()
        with self._lock:
            children = list(self._children.values())
            for process in children:
                _signal(process.terminate)
            deadline = time.monotonic() + grace_s
            for process in children:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal(process.kill)
                    process.wait()

    def submit(self, config: TrainConfig) -> str:
        """Queue a run for ``config``; returns its id. Bad settings raise before anything is queued."""
        from core.datasets import load_dataset
        from core.preflight import check_trainable

        dataset = load_dataset(self.workspace, config.dataset_id)
        check_trainable(config)
        run_id = runs.create_run(self.workspace, config, classes=dataset.classes, status="queued")
        runs.update_run(self.workspace, run_id, queued_at=time.time())
        self.dispatch()
        return run_id

    def stop(self, run_id: str) -> None:
        """Stop a run: a queued one is cancelled, a running one ends after its current batch."""
        runs.request_stop(self.workspace, run_id)
        runs.transition_run(self.workspace, run_id, ("queued",), status="stopped", finished_at=time.time(),
                            error="Cancelled before it started.")

    def status(self) -> tuple[list[dict], list[dict]]:
        """``(running, queued)`` from one read of the run store; queued in the order they will start."""
        records = runs.list_runs(self.workspace, kind=None)
        return [r for r in records if r.get("status") == "running"], _queued(records)

    def queue(self) -> list[dict]:
        """Queued runs in the order they will start."""
        return _queued(runs.list_runs(self.workspace, kind=None))

    def running(self) -> list[dict]:
        return self.status()[0]

    def queue_position(self, run_id: str) -> int | None:
        """1-based place in the queue, None when not queued."""
        for index, record in enumerate(self.queue()):
            if record["run_id"] == run_id:
                return index + 1
        return None

    def dispatch(self) -> None:
        """Reap finished workers, then start queued runs while there are free slots."""
        with self._lock:
            self._reap()
            records = runs.list_runs(self.workspace, kind=None)
            self.recover_orphans(records)
            free = self.max_jobs - len(self._children)
            for record in _queued(records)[: max(free, 0)]:
                self._launch(record["run_id"])

    def recover_orphans(self, records: list[dict] | None = None) -> list[str]:
        """Mark runs left ``running`` whose worker is gone as interrupted; returns their ids."""
        orphans = []
        for record in runs.list_runs(self.workspace, kind=None) if records is None else records:
            run_id = record["run_id"]
            if record.get("status") != "running" or run_id in self._children:
                continue
            if not _worker_alive(record.get("pid"), record.get("pid_started")):
                if runs.transition_run(self.workspace, run_id, ("running",), status="interrupted",
                                       finished_at=time.time(),
                                       error="The training process ended unexpectedly (server restart, killed, "
                                             "or out of memory). Start the run again."):
                    orphans.append(run_id)
        return orphans

    def _loop(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_S):
            try:
                self.dispatch()
            except Exception as exc:  # keep dispatching; a bad run folder must not stop the queue
                print(f"transfer-studio dispatcher: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _launch(self, run_id: str) -> None:
        folder = runs.run_dir(self.workspace, run_id)
        if not runs.transition_run(self.workspace, run_id, ("queued",), status="running", started_at=time.time()):
            return
        log = open(folder / "worker.log", "ab")  # noqa: SIM115 - the child owns it for its lifetime
        command = [sys.executable, "-m", "core", "worker", run_id, "--workspace", str(self.workspace.root),
                   "--parent-pid", str(os.getpid())]
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        log.close()
        runs.update_run(self.workspace, run_id, pid=process.pid, pid_started=process_start_time(process.pid))
        self._children[run_id] = process

    def _reap(self) -> None:
        for run_id, process in list(self._children.items()):
            code = process.poll()
            if code is None:
                continue
            del self._children[run_id]
            runs.transition_run(self.workspace, run_id, ("running", "queued"), status="interrupted",
                                finished_at=time.time(),
                                error=f"The training process ended unexpectedly (exit code {code}: killed or out "
                                      "of memory). Try a smaller batch size or image size, then start again.")


def _signal(send) -> None:
    try:
        send()
    except ProcessLookupError:  # it ended on its own meanwhile
        pass


def _queued(records: list[dict]) -> list[dict]:
    queued = [r for r in records if r.get("status") == "queued"]
    return sorted(queued, key=lambda record: record.get("queued_at", record["created_at"]))


def process_start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from /proc); tells a process from a later one with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _worker_alive(pid, started: str | None) -> bool:
    """True when ``pid`` is a live (not zombie) process that started at ``started`` (when known)."""
    if not pid:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.exists():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        return fields[0] != "Z" and (started is None or fields[19] == started)
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def watch_parent(parent_pid: int, on_gone) -> threading.Thread:
    """Call ``on_gone`` once when ``parent_pid`` is no longer our parent (the server went away)."""

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        on_gone()

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread
