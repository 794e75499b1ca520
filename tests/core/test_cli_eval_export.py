"""`python -m core evaluate | export | predict`: exit codes, JSON fields, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.cli import main
from tests.trained_run import shared_tiny_run

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny_run(tmp_path_factory)


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_json_has_metrics_with_class_names(tiny, capsys):
    code, out, _ = _cli(capsys, "evaluate", tiny.run_id, "--json", "--workspace", str(tiny.workspace.root))
    data = json.loads(out)
    assert code == 0 and data["split"] == "val" and data["classes"] == list(tiny.dataset.classes)
    assert data["num_images"] == len(tiny.dataset.paths("val")) and 0 <= data["accuracy"] <= 1
    assert [row["class"] for row in data["per_class"]] == list(tiny.dataset.classes)
    assert {"precision", "recall", "f1", "support"} <= set(data["per_class"][0])
    assert sum(map(sum, data["confusion_matrix"])) == data["num_images"] and "records" not in data


def test_evaluate_text_prints_table_and_named_confusion_matrix(tiny, capsys):
    code, out, _ = _cli(capsys, "evaluate", tiny.run_id, "--workspace", str(tiny.workspace.root))
    assert code == 0 and "accuracy" in out and "macro F1" in out and "precision" in out
    assert "confusion matrix" in out and all(name in out for name in tiny.dataset.classes)


def test_evaluate_test_split_without_one_is_a_one_line_error(tiny, capsys):
    code, out, err = _cli(capsys, "evaluate", tiny.run_id, "--split", "test", "--workspace", str(tiny.workspace.root))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "test" in err


def test_export_bundle_then_predict_with_it(tiny, capsys, tmp_path):
    workspace = str(tiny.workspace.root)
    code, out, _ = _cli(capsys, "export", tiny.run_id, "--format", "bundle", "--out", str(tmp_path / "b.zip"),
                        "--json", "--workspace", workspace)
    path = Path(json.loads(out)["path"])
    assert code == 0 and path == tmp_path / "b.zip" and zipfile.is_zipfile(path)
    image = str(tiny.dataset.paths("val")[0])
    code, out, err = _cli(capsys, "predict", str(path), image, "--top-k", "2", "--json")
    from_bundle = json.loads(out)
    assert "runtime: LiteRT (XNNPACK): model.tflite" in err  # the bundle carries model.tflite
    code_run, out_run, _ = _cli(capsys, "predict", tiny.run_id, image, "--json", "--workspace", workspace)
    from_run = json.loads(out_run)
    assert code == code_run == 0 and len(from_bundle) == 1
    assert {"file", "label", "probability", "top_k", "unknown"} <= set(from_bundle[0])
    assert len(from_bundle[0]["top_k"]) == 2 and from_bundle[0]["label"] == from_run[0]["label"]


def test_export_tflite_with_parity_check(tiny, capsys, tmp_path):
    code, out, _ = _cli(capsys, "export", tiny.run_id, "--format", "tflite", "--quantize", "dynamic", "--check",
                        "--out", str(tmp_path / "m.tflite"), "--json", "--workspace", str(tiny.workspace.root))
    data = json.loads(out)
    assert code == 0 and data["parity"]["passed"] and Path(data["path"]).stat().st_size > 0


def test_export_quantize_for_bundle_is_a_user_error(tiny, capsys, tmp_path):
    code, _, err = _cli(capsys, "export", tiny.run_id, "--format", "bundle", "--quantize", "dynamic",
                        "--out", str(tmp_path / "b.zip"), "--workspace", str(tiny.workspace.root))
    assert code == 2 and err.startswith("error: ") and "TFLite only" in err


def test_predict_text_output_names_file_and_class(tiny, capsys):
    image = str(tiny.dataset.paths("val")[0])
    code, out, _ = _cli(capsys, "predict", tiny.run_id, image, "--workspace", str(tiny.workspace.root))
    assert code == 0 and out.startswith(image + ": ") and any(c in out for c in tiny.dataset.classes)


def test_real_process_exits_2_with_one_error_line(tmp_path):
    env = {**os.environ, "TRANSFER_STUDIO_WORKSPACE": str(tmp_path / "ws")}
    done = subprocess.run([sys.executable, "-m", "core", "predict", str(tmp_path / "gone.zip"), "x.jpg"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(lines) == 1 and "gone.zip" in lines[0] and done.stdout == ""
