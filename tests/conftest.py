"""Shared fixtures.

The real material (ImageNet weights in ``keras/models/``, datasets in ``data/``) is looked for in the
folder ``shared/`` beside the project, or wherever ``TRANSFER_STUDIO_SHARED`` points. KERAS_HOME is
pointed at a private copy of its ``keras/`` before Keras is imported anywhere, so tests that ask for
``weights="imagenet"`` load the real MobileNetV2 file offline and nothing writes into it. Tests that
need it fail (never skip) when it is missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_ENV = "TRANSFER_STUDIO_SHARED"
SHARED_DIR = Path(os.environ.get(SHARED_ENV) or PROJECT_ROOT.parent / "shared").expanduser().resolve()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_KERAS_HOME = Path(tempfile.mkdtemp(prefix="ts-keras-home-"))
(_KERAS_HOME / "models").mkdir()
if (SHARED_DIR / "keras" / "models").is_dir():
    for weight_file in (SHARED_DIR / "keras" / "models").iterdir():
        os.symlink(weight_file, _KERAS_HOME / "models" / weight_file.name)
os.environ["KERAS_HOME"] = str(_KERAS_HOME)
# Converted LiteRT models go to a private folder, never the user's machine-wide cache; no background converters.
_LITERT_CACHE = Path(tempfile.mkdtemp(prefix="ts-litert-"))
os.environ["TRANSFER_STUDIO_LITERT_CACHE"] = str(_LITERT_CACHE)
os.environ["TRANSFER_STUDIO_LITERT_BACKGROUND"] = "0"


def _require_shared(relative: str, shared_dir: Path | None = None) -> Path:
    shared_dir = SHARED_DIR if shared_dir is None else shared_dir
    path = shared_dir / relative
    if not path.exists():
        pytest.fail(f"{path} is missing: this test needs the real weights and datasets in the folder {shared_dir} "
                    f"(keras/models/ and data/). Put them there, or set {SHARED_ENV} to the folder that holds them.")
    return path


@pytest.fixture
def shared_data():
    """Returns a function: name of a zip in ../shared/data -> its path (fails when missing)."""
    return lambda name: _require_shared(f"data/{name}")


@pytest.fixture(scope="session")
def keras_home() -> Path:
    """The private KERAS_HOME holding the real MobileNetV2 224 px ImageNet weights."""
    _require_shared("keras/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
    return _KERAS_HOME


@pytest.fixture
def workspace(tmp_path):
    """A fresh, empty workspace."""
    from core.workspace import Workspace

    return Workspace.open(tmp_path / "workspace")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_KERAS_HOME, ignore_errors=True)
    shutil.rmtree(_LITERT_CACHE, ignore_errors=True)
