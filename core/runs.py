"""The run store: one folder per training run under ``workspace/runs``.

``run.json`` holds the record (config, status, metrics, timings, versions), ``history.json`` the
epochs, ``progress.json`` the live batch position, ``model.keras`` and ``labels.json`` the result.
Every write is atomic; read-modify-write of ``run.json`` takes a file lock, so the worker process
and the app server can both update a run safely.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import secrets
import shutil
import time
from pathlib import Path

from core.errors import RunError
from core.run_state import (  # noqa: F401  (the statuses are named once, in run_state; runs.X still reads them)
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    RESULT_STATUSES,
    RunSnapshot,
    RunStatus,
)
from core.workspace import Workspace, atomic_write_json, read_json


def new_run_id(backbone: str) -> str:
    """A sortable, unique run id, e.g. ``20261122-101530-mobilenet_v2-3fa1``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{backbone}-{secrets.token_hex(2)}"


def run_dir(workspace: Workspace, run_id: str) -> Path:
    """The folder of ``run_id``; RunError when the id is malformed."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise RunError(f"{run_id!r} is not a valid run id. See `python -m core runs` for the list.")
    return workspace.runs_dir / run_id


def create_run(workspace: Workspace, config, *, classes, status: RunStatus = RunStatus.QUEUED,
               run_id: str | None = None, **fields) -> str:
    """Create the run folder with its record (``fields`` are added to it); returns the run id."""
    run_id = run_id or new_run_id(config.backbone)
    folder = run_dir(workspace, run_id)
    folder.mkdir(parents=True, exist_ok=False)
    record = {
        "run_id": run_id,
        "created_at": time.time(),
        "status": RunStatus(status),
        "kind": getattr(config, "job_kind", "train"),
        "config": config.to_dict(),
        "dataset_id": config.dataset_id,
        "classes": list(classes),
        "weights": None,
        "best_val_accuracy": None,
        "val_loss": None,
        "epochs_run": 0,
        "timings": {},
        "error": None,
        "versions": library_versions(),
        **fields,
    }
    atomic_write_json(folder / "run.json", record)
    atomic_write_json(folder / "labels.json", list(classes))
    return run_id


def load_run(workspace: Workspace, run_id: str) -> dict:
    """The record of ``run_id`` (RunError naming it when it does not exist)."""
    record = read_json(run_dir(workspace, run_id) / "run.json")
    if record is None:
        raise _missing(workspace, run_id)
    return record


def update_run(workspace: Workspace, run_id: str, **changes) -> dict:
    """Merge ``changes`` into the record under a lock; returns the new record."""
    folder = run_dir(workspace, run_id)
    with _locked(folder):
        record = load_run(workspace, run_id)
        record.update(changes)
        atomic_write_json(folder / "run.json", record)
    return record


def transition_run(workspace: Workspace, run_id: str, from_statuses, **changes) -> bool:
    """Apply ``changes`` only if the run's status is in ``from_statuses``; True when applied."""
    folder = run_dir(workspace, run_id)
    with _locked(folder):
        record = read_json(folder / "run.json")
        if record is None or record.get("status") not in from_statuses:
            return False
        record.update(changes)
        atomic_write_json(folder / "run.json", record)
    return True


def list_runs(workspace: Workspace, kind: str | None = "train") -> list[dict]:
    """Run records of ``kind`` (``train``, ``health``; None: every job), newest first (unreadable ones skipped)."""
    records = []
    for folder in workspace.runs_dir.iterdir() if workspace.runs_dir.exists() else []:
        record = read_json(folder / "run.json") if folder.is_dir() else None
        if record and kind in (None, record.get("kind", "train")):
            records.append(record)
    return sorted(records, key=lambda record: record.get("created_at", 0), reverse=True)


def delete_run(workspace: Workspace, run_id: str) -> bool:
    """Delete a finished run; False when it was already gone (two sessions deleting at once)."""
    folder = run_dir(workspace, run_id)
    record = read_json(folder / "run.json")
    if record is None:
        return False
    if record.get("status") in ACTIVE_STATUSES:
        raise RunError(f"Run {run_id} is {record['status']}; stop it before deleting it.")
    trash = workspace.tmp_dir / f"deleted-{run_id}-{secrets.token_hex(3)}"
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return False
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(workspace.tmp_dir / "exports" / run_id, ignore_errors=True)  # files built for download
    return True


def load_history(workspace: Workspace, run_id: str) -> list[dict]:
    return read_json(run_dir(workspace, run_id) / "history.json", default=[])


def load_progress(workspace: Workspace, run_id: str) -> dict:
    return read_json(run_dir(workspace, run_id) / "progress.json", default={})


def load_snapshot(workspace: Workspace, run_id: str) -> RunSnapshot:
    """Record, progress and history of ``run_id`` as one read-only snapshot (RunError when it does not exist)."""
    snapshot = RunSnapshot.read(run_dir(workspace, run_id))
    if snapshot is None:
        raise _missing(workspace, run_id)
    return snapshot


def _missing(workspace: Workspace, run_id: str) -> RunError:
    return RunError(f"Run {run_id!r} does not exist in {workspace.runs_dir}. See `python -m core runs`.")


def model_path(workspace: Workspace, run_id: str) -> Path:
    return run_dir(workspace, run_id) / "model.keras"


def load_run_model(workspace: Workspace, run_id: str):
    """The saved Keras model of a finished run (reloaded in safe mode)."""
    path = model_path(workspace, run_id)
    if not path.exists():
        status = load_run(workspace, run_id).get("status")
        raise RunError(f"Run {run_id} has no saved model (status: {status}). Train it to the end first.")
    import keras

    return keras.saving.load_model(path, safe_mode=True)


def request_stop(workspace: Workspace, run_id: str) -> None:
    """Ask the worker to stop after its current batch (a flag file it checks)."""
    (run_dir(workspace, run_id) / "stop").touch()


def stop_requested(folder: Path) -> bool:
    return (folder / "stop").exists()


def library_versions() -> dict:
    """Versions of the libraries a run depends on (without importing TensorFlow)."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "keras", "numpy", "pillow", "streamlit"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


@contextlib.contextmanager
def _locked(folder: Path):
    if not folder.exists():
        raise RunError(f"Run folder {folder} does not exist (deleted?).")
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
