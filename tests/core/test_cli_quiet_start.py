"""A real `python -m core predict` on a CPU machine: TensorFlow's start-up noise stays off the terminal, and a
.keras file without its labels.json is named with a warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from core import runs
from tests.trained_run import shared_tiny_run

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_predict_with_a_bare_keras_file_prints_one_warning_and_no_tensorflow_noise(tmp_path_factory, tmp_path):
    # One real process (TensorFlow's import is the thing under test, ~15 s on 2 cores): both claims share it.
    tiny = shared_tiny_run(tmp_path_factory)
    model = tmp_path / "model.keras"
    shutil.copy(runs.model_path(tiny.workspace, tiny.run_id), model)
    image = str(tiny.dataset.paths("val")[0])
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}  # as in a shell
    done = subprocess.run([sys.executable, "-m", "core", "predict", str(model), image], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(image + ": class_")
    lines = done.stderr.splitlines()
    assert len(lines) == 2, lines  # the labels warning, the runtime; no "cuInit", "cuda drivers" or absl lines
    assert lines[0].startswith("warning: No labels.json beside ") and "class_0 to class_2" in lines[0]
    assert lines[1].startswith("runtime: ")
