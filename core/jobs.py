"""Background training jobs: a server-wide queue and worker processes.

A job is a run in the run store. ``JobManager.submit`` records it as ``queued``; a dispatcher
thread starts queued runs in order, each in its own ``python -m core worker`` process, while fewer
than ``max_jobs`` run (default 1, ``$TRANSFER_STUDIO_MAX_JOBS``). On a server with spaces
(``core/spaces.py``) one manager serves every space and takes the spaces in turn, so one person's
five queued runs do not hold up the next person's first. The dispatcher re-reads the run store only
when something changed (a submit, a stop, a worker ending) or every ``RESCAN_S``; pages ask the
manager, which answers from that index, and ``version`` tells them whether anything changed. A crash or out-of-memory in a
worker cannot take the server down; the dispatcher notices a dead worker and marks its run
interrupted. Workers end themselves when the server process goes away, and on start-up the
manager marks runs left ``running`` by a previous server as interrupted.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from core import runs
from core.config import TrainConfig
from core.processes import process_start_time
from core.run_state import RunStatus
from core.spaces import check_run_room, space_workspaces, spaces_enabled
from core.workspace import Workspace, read_json

MAX_JOBS_ENV = "TRANSFER_STUDIO_MAX_JOBS"
POLL_INTERVAL_S = 0.5
RESCAN_S = 5.0
NICE_ENV = "TRANSFER_STUDIO_WORKER_NICE"
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
        spaces: Also manage the runs of every space under ``workspace``; default ``$TRANSFER_STUDIO_SPACES``.
    """

    def __init__(self, workspace: Workspace, max_jobs: int | None = None, spaces: bool | None = None):
        self.workspace = workspace
        self.max_jobs = max_jobs or int(os.environ.get(MAX_JOBS_ENV, "1"))
        self.spaces = spaces_enabled() if spaces is None else spaces
        self.version = 0
        self._children: dict[Path, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._index: list[dict] = []
        self._scanned_at = 0.0

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

    def submit(self, config: TrainConfig, workspace: Workspace | None = None, *, fields: dict | None = None) -> str:
        """Queue a run for ``config`` in ``workspace`` (a space; default the manager's); returns its id.

        ``fields`` are added to the run record (``continued_from`` of ``core.training.continuation.continue_config``:
        the run starts from an earlier run's model, which that function has checked).
        Bad settings, and a space at its limit (LimitError), raise before anything is queued. A tool job
        (export, speed, embedding map: ``core.tool_jobs``) checks its own inputs with ``prepare_job``.
        """
        workspace = workspace or self.workspace
        fields = dict(fields or {})  # _check_run adds the run's plan
        if hasattr(config, "prepare_job"):
            classes, run_id = config.prepare_job(workspace), runs.new_run_id(config.job_kind)
        else:
            classes, run_id = self._check_run(config, workspace, fields), None
        run_id = runs.create_run(workspace, config, classes=classes, status=RunStatus.QUEUED, run_id=run_id, **fields)
        runs.update_run(workspace, run_id, queued_at=time.time(), space=workspace.space)
        self.dispatch()
        return run_id

    @staticmethod
    def _check_run(config, workspace: Workspace, fields: dict) -> list[str]:
        """Check a training run or health check before it is queued; returns its dataset's classes."""
        from core.data.datasets import load_dataset
        from core.models.preflight import check_trainable

        dataset = load_dataset(workspace, config.dataset_id)
        if "continued_from" not in fields:  # the run plan: a bad setting fails here, before anything is queued
            plan = check_trainable(config, workspace)
            if hasattr(plan, "describe"):
                fields["plan"] = plan.describe()
        if getattr(config, "distribution", "") == "multi-worker":  # health jobs have none
            from core.training.cluster import require_workers

            require_workers()
        check_run_room(workspace, sum(r.get("status") in runs.ACTIVE_STATUSES for r in runs.list_runs(workspace)))
        return dataset.classes

    def stop(self, run_id: str, workspace: Workspace | None = None) -> None:
        """Stop a run: a queued one is cancelled, a running one ends after its current batch."""
        workspace = workspace or self.workspace
        runs.request_stop(workspace, run_id)
        runs.transition_run(workspace, run_id, (RunStatus.QUEUED,), status=RunStatus.STOPPED,
                            finished_at=time.time(), error="Cancelled before it started.")
        self._wake.set()

    def status(self, workspace: Workspace | None = None) -> tuple[list[dict], list[dict]]:
        """``(running, queued)`` from the dispatcher's index; queued in the order they will start.

        With ``workspace``, only that workspace's (space's) runs; without, every run the manager serves.
        """
        if not self._scanned_at:
            with self._lock:
                self._set_index(self._scan())
        index = self._index
        if workspace is not None:
            index = [r for r in index if r["_root"] == str(workspace.root)]
        return ([r for r in index if r.get("status") == RunStatus.RUNNING],
                [r for r in index if r.get("status") == RunStatus.QUEUED])

    def queue(self) -> list[dict]:
        """Queued runs in the order they will start."""
        return self.status()[1]

    def running(self) -> list[dict]:
        return self.status()[0]

    def queue_position(self, run_id: str, workspace: Workspace | None = None) -> int | None:
        """1-based place in the queue (of every space), None when not queued."""
        root = str((workspace or self.workspace).root)
        for index, record in enumerate(self.queue()):
            if record["run_id"] == run_id and record["_root"] == root:
                return index + 1
        return None

    def dispatch(self) -> None:
        """Reap finished workers, then start queued runs (spaces in turn) while there are free slots."""
        with self._lock:
            self._wake.clear()
            self._reap()
            records = self._scan()
            self.recover_orphans(records)
            free = self.max_jobs - len(self._children)
            started = [self._launch(record) for record in fair_order(records)[: max(free, 0)]]
            self._set_index(self._scan() if started else records)

    def _scan(self) -> list[dict]:
        """Every run record of the managed workspaces, each with ``_root`` (its workspace folder)."""
        workspaces = [self.workspace] + (space_workspaces(self.workspace) if self.spaces else [])
        records = []
        for workspace in workspaces:
            for record in runs.list_runs(workspace, kind=None):
                record["_root"] = str(workspace.root)
                record.setdefault("space", workspace.space)
                records.append(record)
        return records

    def _set_index(self, records: list[dict]) -> None:
        active = [r for r in records if r.get("status") == RunStatus.RUNNING] + fair_order(records)
        if [(r["_root"], r["run_id"], r["status"]) for r in active] != \
                [(r["_root"], r["run_id"], r["status"]) for r in self._index]:
            self.version += 1
        self._index = active
        self._scanned_at = time.monotonic()

    def _due(self) -> bool:
        with self._lock:
            ended = any(process.poll() is not None for process in self._children.values())
        return ended or self._wake.is_set() or time.monotonic() - self._scanned_at >= RESCAN_S

    def recover_orphans(self, records: list[dict] | None = None) -> list[str]:
        """Mark runs left ``running`` whose worker is gone as interrupted; returns their ids."""
        orphans = []
        for record in self._scan() if records is None else records:
            run_id = record["run_id"]
            workspace = Workspace.open(record.get("_root") or self.workspace.root)
            if record.get("status") != RunStatus.RUNNING or runs.run_dir(workspace, run_id) in self._children:
                continue
            if not _worker_alive(record.get("pid"), record.get("pid_started")):
                if runs.transition_run(workspace, run_id, (RunStatus.RUNNING,), status=RunStatus.INTERRUPTED,
                                       finished_at=time.time(),
                                       error=_ended_message(record, "server restart, killed, or out of memory",
                                                            "Start the run again.")):
                    orphans.append(run_id)
        return orphans

    def _loop(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_S):
            try:
                if self._due():
                    self.dispatch()
            except Exception as exc:  # keep dispatching; a bad run folder must not stop the queue
                print(f"transfer-studio dispatcher: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _launch(self, record: dict) -> bool:
        run_id, workspace = record["run_id"], Workspace.open(record["_root"])
        folder = runs.run_dir(workspace, run_id)
        if not runs.transition_run(workspace, run_id, (RunStatus.QUEUED,), status=RunStatus.RUNNING,
                                   started_at=time.time()):
            return False
        log = open(folder / "worker.log", "ab")  # noqa: SIM115 - the child owns it for its lifetime
        command = [sys.executable, "-m", "core", "worker", run_id, "--workspace", str(workspace.root),
                   "--parent-pid", str(os.getpid())]
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=_worker_environment(record))
        log.close()
        nice = int(os.environ.get(NICE_ENV, "0") or 0)
        if nice:  # a classroom server: training yields to the pages, which stay quick while a run trains
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, process.pid, nice)
        runs.update_run(workspace, run_id, pid=process.pid, pid_started=process_start_time(process.pid))
        self._children[folder] = process
        return True

    def _reap(self) -> None:
        for folder, process in list(self._children.items()):
            code = process.poll()
            if code is None:
                continue
            del self._children[folder]
            workspace, run_id = Workspace.open(folder.parents[1]), folder.name
            record = read_json(folder / "run.json") or {}
            runs.transition_run(workspace, run_id, runs.ACTIVE_STATUSES, status=RunStatus.INTERRUPTED,
                                finished_at=time.time(),
                                error=_ended_message(record, f"exit code {code}: killed or out of memory",
                                                     "Try a smaller batch size or image size, then start again."))


def _ended_message(record: dict, why: str, fix: str) -> str:
    """What a run (or another job) whose process died is told; ``fix`` is a training run's."""
    if record.get("kind", "train") == "train":
        return f"The training process ended unexpectedly ({why}). {fix}"
    return f"The job's process ended unexpectedly ({why}). Start it again."


def _worker_environment(record: dict) -> dict | None:
    """A run across the configured workers trains as worker 0 (the chief) of their cluster; others inherit."""
    if (record.get("config") or {}).get("distribution") != "multi-worker":
        return None
    from core.training.cluster import configured_workers, tf_config

    return {**os.environ, "TF_CONFIG": tf_config(configured_workers(), 0)}


def _signal(send) -> None:
    try:
        send()
    except ProcessLookupError:  # it ended on its own meanwhile
        pass


def fair_order(records: list[dict]) -> list[dict]:
    """The queued runs of ``records`` in the order they will start: spaces in turn.

    The next run is the first queued run of the space whose last start is the longest ago (a space
    that never trained goes first; ties by the time the run was queued). Without spaces every run is
    of the one space ``None``, and this is first come, first served.
    """
    def queued_at(record):
        return record.get("queued_at", record["created_at"])

    waiting: dict = {}
    for record in sorted((r for r in records if r.get("status") == RunStatus.QUEUED), key=queued_at):
        waiting.setdefault(record.get("space"), []).append(record)
    last_start = {}
    for record in records:
        if record.get("started_at") is not None:
            space = record.get("space")
            last_start[space] = max(last_start.get(space, float("-inf")), record["started_at"])
    order, turn = [], max([time.time(), *last_start.values()])
    while waiting:
        space = min(waiting, key=lambda s: (last_start.get(s, float("-inf")), queued_at(waiting[s][0])))
        order.append(waiting[space].pop(0))
        if not waiting[space]:
            del waiting[space]
        turn += 1
        last_start[space] = turn
    return order


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
