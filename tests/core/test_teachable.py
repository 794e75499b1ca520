"""Teachable Machine exports imported as runs: classes, predictions against their own runtimes, every path."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.teachable_reference import teachable_pixels
from tests.teachable_runs import KERAS_CLASSES, KERAS_DIR, TFJS_CLASSES, TFJS_DIR, imported_runs, real_photos

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "teachable" / "leaves_tfjs_reference.json"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return imported_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return real_photos(tmp_path_factory.mktemp("photos"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_each_export_imports_as_a_run_with_its_classes_in_order_and_file_hashes(runs):
    from core.runs import load_run

    keras_record, tfjs_record = load_run(runs.workspace, runs.keras_run), load_run(runs.workspace, runs.tfjs_run)
    assert keras_record["classes"] == KERAS_CLASSES and tfjs_record["classes"] == TFJS_CLASSES
    assert keras_record["status"] == "done" and keras_record["name"] == "waste"
    assert keras_record["imported_from"]["files"] == {name: _sha256(KERAS_DIR / name)
                                                      for name in ("keras_model.h5", "labels.txt")}
    assert tfjs_record["imported_from"]["files"] == {name: _sha256(TFJS_DIR / name)
                                                     for name in ("metadata.json", "model.json", "weights.bin")}
    for record in (keras_record, tfjs_record):  # read from the files, not assumed
        assert record["imported_from"]["alpha"] == 0.35 and record["config"]["image_size"] == 224
        assert [d["units"] for d in record["imported_from"]["head"]] == [100, len(record["classes"])]
        assert record["config"]["resize"] == "crop-lanczos"


def test_imported_model_carries_the_pixel_scaling_as_a_real_layer_and_reloads_in_safe_mode(runs):
    import keras

    from core.runs import model_path

    model = keras.saving.load_model(model_path(runs.workspace, runs.keras_run), safe_mode=True)
    scale = model.get_layer("preprocess_scale")
    assert isinstance(scale, keras.layers.Rescaling)
    assert np.isclose(scale.scale, 1 / 127.5) and scale.offset == -1.0
    assert {layer.name for layer in model.layers} >= {"image", "backbone", "pool", "head"}


def test_keras_export_predicts_as_tf_keras_runs_it_on_real_photos(runs, photos):
    from core.models.prediction import Predictor

    script = Path(__file__).resolve().parents[1] / "teachable_reference.py"
    done = subprocess.run([sys.executable, str(script), "keras", str(KERAS_DIR / "keras_model.h5"),
                           *map(str, photos)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    reference = json.loads(done.stdout.strip().splitlines()[-1])
    # tf-keras ran in its own interpreter and did not change which Keras that interpreter's `keras` is.
    assert reference["tf_keras"].startswith("2.") and reference["keras"].startswith("3.")
    assert reference["tf.keras"].startswith("3.") and "tf_keras" not in sys.modules
    ours = Predictor.from_run(runs.workspace, runs.keras_run).predict_probabilities(photos)
    expected = np.asarray(reference["probabilities"])
    assert np.abs(ours - expected).max() < TOLERANCE
    assert ours.argmax(1).tolist() == expected.argmax(1).tolist()


def test_tfjs_export_predicts_as_tensorflow_js_runs_it_on_real_photos(runs, tmp_path):
    from core.models.prediction import Predictor

    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    photos = real_photos(tmp_path, [image["zip_member"] for image in reference["images"]])
    assert [_sha256(path) for path in photos] == [image["sha256"] for image in reference["images"]]
    ours = Predictor.from_run(runs.workspace, runs.tfjs_run).predict_probabilities(photos)
    expected = np.asarray(reference["probabilities"])
    assert np.abs(ours - expected).max() < TOLERANCE
    assert ours.argmax(1).tolist() == expected.argmax(1).tolist()


def test_the_run_prepares_pixels_as_teachable_machine_does(runs, photos):
    from core.models.prediction import Predictor

    predictor = Predictor.from_run(runs.workspace, runs.tfjs_run)
    for path in photos[:3]:
        assert np.array_equal(predictor.prepare(path), teachable_pixels(path).astype(np.float32))


def test_imported_run_exports_a_bundle_whose_predict_py_gives_the_same_answers(runs, photos, tmp_path):
    from core.delivery.export import export_bundle
    from core.models.prediction import Predictor

    bundle = export_bundle(runs.workspace, runs.keras_run, tmp_path / "waste.zip")
    folder = tmp_path / "unpacked"
    zipfile.ZipFile(bundle).extractall(folder)
    code = ("import json, sys\nsys.path.insert(0, '.')\nimport predict\n"
            "print(json.dumps(predict.predict(sys.argv[1:], top_k=4)))\n")
    done = subprocess.run([sys.executable, "-c", code, *map(str, photos)], cwd=folder, capture_output=True,
                          text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    app = Predictor.from_run(runs.workspace, runs.keras_run).predict_images(photos, top_k=4)
    assert [r["label"] for r in fresh] == [r["label"] for r in app]
    assert np.abs(np.array([[p for _, p in r["top_k"]] for r in fresh])
                  - np.array([[p for _, p in r["top_k"]] for r in app])).max() < 1e-5
    config = json.loads(zipfile.ZipFile(bundle).read("config.json"))
    assert config["resize"] == "crop-lanczos"
    assert config["imported_from"]["files"]["keras_model.h5"] == _sha256(KERAS_DIR / "keras_model.h5")
    assert "--dataset" in zipfile.ZipFile(bundle).read("MODEL_CARD.md").decode()


def test_exports_of_an_imported_run_pass_the_parity_check(runs):
    from core.delivery.export import check_parity

    # The run has no dataset of its own: the check runs on generated pictures.
    # bundle and TFLite only: the SavedModel path is part of the TFLite conversion and is slow on 2 cores.
    rows = check_parity(runs.workspace, runs.tfjs_run, formats=("bundle", "tflite"), max_images=8)
    for fmt, row in rows.items():
        assert row["passed"], (fmt, row)
        assert row["images"] == 8 and row["max_abs_diff"] < TOLERANCE


def test_gradcam_explains_an_imported_model(runs, photos):
    from core.insight.gradcam import compute_gradcam
    from core.models.prediction import Predictor

    predictor = Predictor.from_run(runs.workspace, runs.keras_run)
    prepared = predictor.prepare(photos[0])
    heatmap, index, probabilities = compute_gradcam(predictor.model, prepared)
    expected = predictor.predict_arrays(prepared[None])[0]
    assert heatmap.shape == (224, 224) and 0.0 <= heatmap.min() and heatmap.max() <= 1.0 and heatmap.max() > 0
    assert index == int(expected.argmax())
    assert np.abs(probabilities - expected).max() < 1e-4  # the float parity tolerance: Grad-CAM runs Keras, prediction may run LiteRT


def test_cli_imports_the_keras_zip_and_prints_run_id_classes_and_format(tmp_path, capsys):
    from core.cli import main
    from core.runs import load_run
    from core.workspace import Workspace

    archive = tmp_path / "converted_keras.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ("keras_model.h5", "labels.txt"):
            zipped.write(KERAS_DIR / name, f"converted_keras/{name}")
    assert main(["import", str(archive), "--json", "--name", "bins", "--workspace", str(tmp_path / "ws")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed) == {"run_id", "classes", "format"}
    assert printed["classes"] == KERAS_CLASSES and printed["format"] == "keras"
    record = load_run(Workspace.open(tmp_path / "ws"), printed["run_id"])
    assert record["name"] == "bins" and record["imported_from"]["source"] == str(archive)
