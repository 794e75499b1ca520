"""Shared set-up of the benchmark scripts: a private KERAS_HOME over ../shared/keras, a temp workspace."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


def setup_environment() -> Path:
    """Point KERAS_HOME at a temp copy of ../shared/keras (before Keras is imported); returns a temp folder."""
    sys.path.insert(0, str(PROJECT_ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    scratch = Path(tempfile.mkdtemp(prefix="ts-bench-"))
    models = scratch / "keras" / "models"
    models.mkdir(parents=True)
    for weight_file in (SHARED / "keras" / "models").glob("*.h5"):
        os.symlink(weight_file, models / weight_file.name)
    os.environ["KERAS_HOME"] = str(scratch / "keras")
    return scratch


def shared_zip(name: str) -> Path:
    path = SHARED / "data" / name
    if not path.exists():
        sys.exit(f"error: {path} is missing; benchmarks need ../shared/data")
    return path
