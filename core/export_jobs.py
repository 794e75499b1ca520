"""Exports built for download, as a background job: each format written and checked for parity with the app.

Built files go to ``workspace/tmp/exports/<run_id>/`` (the parity rows in ``parity.json``), so a refresh or another
session finds them without rebuilding, and deleting the run deletes them. The job (kind ``export``, run by
``core.tool_jobs``) reports the format it is on (``formats_done`` of ``formats_of``) and, while it checks parity,
the validation images checked (``batch`` of ``of``); Stop ends it between two steps or two batches of the check.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from core import runs
from core.delivery import export
from core.errors import ExportError, RunError
from core.progress import check_stop
from core.tool_jobs import ToolConfig
from core.workspace import Workspace, atomic_write_json, read_json

FILE_SUFFIXES = {"bundle": "-bundle.zip", "tflite": ".tflite", "tflite_dynamic": "-dynamic.tflite",
                 "savedmodel": "-savedmodel.zip"}
PARITY_FILE = "parity.json"


def export_dir(workspace: Workspace, run_id: str) -> Path:
    """Where the files of ``run_id`` built for download are kept."""
    return workspace.tmp_dir / "exports" / run_id


def export_file(workspace: Workspace, run_id: str, fmt: str) -> Path:
    """The downloadable file of format ``fmt`` (a key of ``FILE_SUFFIXES``), built or not."""
    return export_dir(workspace, run_id) / f"{run_id}{FILE_SUFFIXES[fmt]}"


def build_export(workspace: Workspace, run_id: str, fmt: str) -> Path:
    """Write format ``fmt`` of the run under the exports folder; returns the downloadable file."""
    target = export_file(workspace, run_id, fmt)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "bundle":
        return export.export_bundle(workspace, run_id, target)
    if fmt in ("tflite", "tflite_dynamic"):
        return export.export_tflite(workspace, run_id, target, quantize="dynamic" if fmt == "tflite_dynamic" else None)
    saved = folder / f"{run_id}-savedmodel"
    shutil.rmtree(saved, ignore_errors=True)
    export.export_savedmodel(workspace, run_id, saved)
    partial = shutil.make_archive(str(folder / f".{run_id}-savedmodel"), "zip", root_dir=saved)
    Path(partial).replace(target)  # the download never sees a half-written zip
    shutil.rmtree(saved, ignore_errors=True)
    return target


def record_parity(workspace: Workspace, run_id: str, fmt: str, *, on_batch=None) -> dict:
    """Run the parity check of one format and keep its row in ``parity.json``; returns the row."""
    row = export.check_parity(workspace, run_id, formats=(fmt,), on_batch=on_batch)[fmt]
    path = export_dir(workspace, run_id) / PARITY_FILE
    rows = read_json(path, default={}) or {}
    rows[fmt] = row
    atomic_write_json(path, rows)
    return row


def latest_export_job(workspace: Workspace, run_id: str) -> dict | None:
    """The newest export job of run ``run_id`` (any status, any formats), or None."""
    return next((r for r in runs.list_runs(workspace, kind=ExportConfig.job_kind)
                 if (r.get("config") or {}).get("run_id") == run_id), None)


def load_parity(workspace: Workspace, run_id: str) -> dict:
    """``{format: parity row}`` of the formats built for download so far."""
    return read_json(export_dir(workspace, run_id) / PARITY_FILE, default={}) or {}


@dataclass(frozen=True)
class ExportConfig(ToolConfig):
    """An export job: build ``formats`` of run ``run_id`` for download, each checked for parity."""

    run_id: str
    formats: tuple[str, ...] = ("bundle",)
    job_kind: ClassVar[str] = "export"
    stopped_message: ClassVar[str] = "Stopped; the formats finished before Stop are kept."

    def __post_init__(self):
        object.__setattr__(self, "formats", tuple(self.formats))
        unknown = [fmt for fmt in self.formats if fmt not in FILE_SUFFIXES]
        if unknown or not self.formats:
            raise ExportError(f"Unknown export format(s) {unknown or 'none given'}; choose some of "
                              f"{', '.join(FILE_SUFFIXES)}.")

    @property
    def dataset_id(self) -> str:  # the run store's records name a dataset; an export has none of its own
        return ""

    def prepare_job(self, workspace: Workspace) -> list[str]:
        """Check there is a model to export before the job is queued; returns the run's classes.

        Raises:
            RunError: no such run, or a run without a saved model.
        """
        record = runs.load_run(workspace, self.run_id)
        if not runs.model_path(workspace, self.run_id).exists():
            raise RunError(f"Run {self.run_id} has no saved model to export (status: {record.get('status')}). "
                           "Train it to the end first.")
        return list(record.get("classes") or [])

    def execute(self, workspace: Workspace, folder: Path, reporter) -> dict:
        """Build and check each format in turn; returns ``{"run_id", "formats": {fmt: {file, bytes, parity}}}``."""
        def checked(done: int, total: int) -> None:
            reporter.batch(done, total)
            check_stop(reporter)

        built, count = {}, len(self.formats)
        for done, fmt in enumerate(self.formats):
            check_stop(reporter)
            reporter.stage("exporting", format=fmt, formats_done=done, formats_of=count)
            path = build_export(workspace, self.run_id, fmt)
            check_stop(reporter)
            reporter.stage("parity", format=fmt, formats_done=done, formats_of=count)
            row = record_parity(workspace, self.run_id, fmt, on_batch=checked)
            built[fmt] = {"file": path.name, "bytes": path.stat().st_size, "parity": row}
        return {"run_id": self.run_id, "formats": built}
