"""Teachable Machine exports from ../shared, imported once per test session (they are only read afterwards)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SHARED_DIR

EXPORTS_DIR = SHARED_DIR / "models" / "teachable_machine"
KERAS_DIR = EXPORTS_DIR / "waste_keras"
TFJS_DIR = EXPORTS_DIR / "leaves_tfjs"
KERAS_CLASSES = ["cardboard", "plastic", "glass", "metal"]
TFJS_CLASSES = ["diseased leaves", "healthy leaves"]


@dataclass(frozen=True)
class ImportedRuns:
    workspace: object
    keras_run: str
    tfjs_run: str


_CACHE: dict[str, ImportedRuns] = {}


def require_exports() -> None:
    for folder in (KERAS_DIR, TFJS_DIR):
        if not folder.is_dir():
            pytest.fail(f"{folder} is missing: these tests need the real Teachable Machine exports in ../shared.")


def imported_runs(tmp_path_factory) -> ImportedRuns:
    """One workspace holding both exports imported as runs (keras from its folder, TF.js from model.json)."""
    if "runs" not in _CACHE:
        from core.delivery.teachable_model import import_teachable
        from core.workspace import Workspace

        require_exports()
        workspace = Workspace.open(tmp_path_factory.mktemp("teachable") / "workspace")
        keras_run = import_teachable(workspace, KERAS_DIR, name="waste")["run_id"]
        tfjs_run = import_teachable(workspace, TFJS_DIR / "model.json")["run_id"]
        _CACHE["runs"] = ImportedRuns(workspace, keras_run, tfjs_run)
    return _CACHE["runs"]


def real_photos(folder: Path, members=None) -> list[Path]:
    """Real photos from ../shared/data/hymenoptera.zip, extracted into ``folder``."""
    from tests.teachable_reference import REFERENCE_PHOTOS

    archive_path = SHARED_DIR / "data" / "hymenoptera.zip"
    if not archive_path.is_file():
        pytest.fail(f"{archive_path} is missing: these tests need the real photos in ../shared/data.")
    members = list(members or REFERENCE_PHOTOS)
    with zipfile.ZipFile(archive_path) as archive:
        for name in members:
            archive.extract(name, folder)
    return [folder / name for name in members]
