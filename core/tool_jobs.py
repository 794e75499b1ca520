"""Export, speed measurement and the embedding map as background jobs, like training and the health check.

A tool job is a record in the run store of its own kind (``export``, ``speed``, ``embedding-map``; ``runs.list_runs``
leaves them out of the training lists). The job manager queues and starts it like any run (the server's one queue,
its spaces in turn), in a ``python -m core worker`` process that calls :func:`execute_tool_job`. The worker writes
``progress.json`` as it goes (a stage, and done/of where there is a count) and ``result.json`` when it is done, so a
page polls the job and finds its result again after a refresh.

Each kind is a frozen config dataclass (``core/export_jobs.py``, ``core/speed_jobs.py``, ``core/map_jobs.py``) with
``job_kind``; ``prepare_job(workspace)`` checks its inputs before anything is queued and returns the class names for
the record, and ``execute(workspace, folder, reporter)`` does the work and returns the result.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import ClassVar

from core import runs
from core.errors import LimitError, StudioError
from core.workspace import Workspace, atomic_write_json, read_json

RESULT = "result.json"
ACTIVE = runs.ACTIVE_STATUSES
TOOL_KINDS = {"export": "core.export_jobs:ExportConfig", "speed": "core.speed_jobs:SpeedConfig",
              "embedding-map": "core.map_jobs:MapConfig"}


class ToolConfig:
    """What the tool job configs share: their JSON form and the words of their ends (a mixin of frozen dataclasses)."""

    job_kind: ClassVar[str] = ""
    stopped_message: ClassVar[str] = "Stopped before it finished; nothing was kept."
    interrupted_message: ClassVar[str] = "The server shut down before the job finished. Start it again."

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        known = {field.name: field for field in dataclasses.fields(cls)}
        values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()
                  if key in known}
        return cls(**values)


def config_class(kind: str) -> type:
    """The config class of tool job ``kind``."""
    module, name = TOOL_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def job_config(record: dict):
    """The config of a tool job record."""
    return config_class(record["kind"]).from_dict(record.get("config") or {})


def is_tool_job(record: dict) -> bool:
    return record.get("kind") in TOOL_KINDS


def tool_jobs(workspace: Workspace, kind: str) -> list[dict]:
    """The records of ``kind``, newest first."""
    return runs.list_runs(workspace, kind=kind)


def latest_job(workspace: Workspace, config, records: list[dict] | None = None) -> dict | None:
    """The newest job (any status) with exactly ``config``, or None."""
    for record in tool_jobs(workspace, config.job_kind) if records is None else records:
        try:
            if job_config(record) == config:
                return record
        except (TypeError, ValueError, KeyError, StudioError):  # a record of another shape: not this job
            continue
    return None


def active_job(workspace: Workspace, config) -> dict | None:
    """The queued or running job with ``config``, if any (found on disk: it survives a refresh)."""
    record = latest_job(workspace, config)
    return record if record and record.get("status") in ACTIVE else None


def load_result(workspace: Workspace, job_id: str) -> dict | None:
    """What a finished tool job wrote, or None."""
    return read_json(runs.run_dir(workspace, job_id) / RESULT)


def check_job_room(workspace: Workspace) -> None:
    """LimitError when a space already has as many tool jobs queued or running as it may have runs."""
    if workspace.space is None:
        return
    from core.spaces import QUEUED_ENV, SpaceLimits

    limit = SpaceLimits.from_env().max_queued
    active = [r for kind in TOOL_KINDS for r in tool_jobs(workspace, kind) if r.get("status") in ACTIVE]
    if len(active) >= limit:
        raise LimitError(f"Job limit reached: this space has {len(active)} exports, speed measurements or maps "
                         f"queued or running, the most allowed at once is {limit} ({QUEUED_ENV}). Wait for one "
                         "to finish, or stop one, then try again. Nothing was lost.")


def submit_tool_job(manager, config) -> str:
    """Queue a tool job on ``manager`` (a ``core.jobs.JobManager`` or ``ui.jobs.VisitorJobs``); returns its id.

    The same job already queued or running is not queued twice (a second click, another tab): its id is returned.

    Raises:
        StudioError: what ``config.prepare_job`` refuses (no such run or dataset, missing weights, a bad setting),
            or LimitError when the space has too many jobs waiting.
    """
    workspace = manager.workspace
    found = active_job(workspace, config)
    if found is not None:
        return found["run_id"]
    check_job_room(workspace)
    return manager.submit(config)


def execute_tool_job(workspace: Workspace, job_id: str) -> dict:
    """Run tool job ``job_id`` in this process; records how it ended and writes ``result.json`` when done."""
    from core.progress import run_job

    config = job_config(runs.load_run(workspace, job_id))

    def work(folder, reporter) -> None:
        atomic_write_json(folder / RESULT, config.execute(workspace, folder, reporter))

    return run_job(workspace, job_id, work, stopped=config.stopped_message,
                   interrupted=config.interrupted_message, mark_stopped=True)
