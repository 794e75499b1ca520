"""Exports behave like the in-app model: bundle in a fresh process, TFLite and SavedModel parity."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.images import RESIZE_MODES, as_stored, load_rgb_image, prepare_image
from core.delivery.export import (
    FLOAT_TOLERANCE,
    MIN_AGREEMENT,
    QUANTIZED_MEAN_TOLERANCE,
    check_parity,
    export_bundle,
    export_model,
    export_savedmodel,
    export_tflite,
)
from core.errors import ExportError, RunError
from core.models.prediction import Predictor
from tests.trained_run import shared_tiny_run

SCRIPT = Path(__file__).resolve().parents[2] / "core" / "delivery" / "bundle_predict.py"
BUNDLE_FILES = {"model.keras", "model.tflite", "labels.json", "config.json", "metrics.json", "MODEL_CARD.md",
                "REPORT.html", "predict.py"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def bundle(tiny, tmp_path_factory):
    return export_bundle(tiny.workspace, tiny.run_id, tmp_path_factory.mktemp("bundle") / "model.zip")


def _bundle_script_module():
    spec = importlib.util.spec_from_file_location("bundle_predict", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _odd_images(tmp_path):
    """Images in awkward shapes and modes: wide, tall, transparent, palette, grayscale, 16-bit."""
    rng = np.random.default_rng(1)
    images = {
        "wide.jpg": Image.fromarray(rng.integers(0, 255, (30, 70, 3), dtype=np.uint8)),
        "tall.png": Image.fromarray(rng.integers(0, 255, (81, 23, 3), dtype=np.uint8)),
        "alpha.png": Image.fromarray(rng.integers(0, 255, (40, 50, 4), dtype=np.uint8), "RGBA"),
        "palette.png": Image.fromarray(rng.integers(0, 255, (33, 33, 3), dtype=np.uint8)).convert("P"),
        "gray.png": Image.fromarray(rng.integers(0, 255, (45, 28), dtype=np.uint8), "L"),
        "deep.png": Image.fromarray(rng.integers(0, 65535, (20, 31), dtype=np.uint16)),
        "float.tiff": Image.fromarray(rng.uniform(0.0, 1.0, (22, 30)).astype(np.float32)),
        "int32.tiff": Image.fromarray(rng.integers(0, 65535, (24, 26)).astype(np.int32)),
    }
    paths = []
    for name, image in images.items():
        image.save(tmp_path / name)
        paths.append(tmp_path / name)
    return paths


@pytest.mark.parametrize("resize", RESIZE_MODES)
def test_bundle_script_prepares_identical_pixels_to_core_images(tmp_path, resize):
    script = _bundle_script_module()
    for path in _odd_images(tmp_path):
        for size in (32, 57):
            ours = prepare_image(as_stored(load_rgb_image(path)), size, resize)
            theirs = script.prepare_image(script.as_stored(script.load_image(path)), size, resize)
            assert theirs.dtype == np.float32 and theirs.shape == (size, size, 3)
            np.testing.assert_array_equal(theirs, ours, err_msg=f"{path.name} {resize} {size}")


def test_bundle_script_imports_only_litert_keras_pillow_numpy_and_stdlib():
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules - set(sys.stdlib_module_names) == {"ai_edge_litert", "keras", "numpy", "PIL"}


def test_bundle_holds_model_labels_config_metrics_card_and_script(tiny, bundle):
    with zipfile.ZipFile(bundle) as archive:
        assert set(archive.namelist()) == BUNDLE_FILES
        config = json.loads(archive.read("config.json"))
        metrics = json.loads(archive.read("metrics.json"))
        card = archive.read("MODEL_CARD.md").decode()
        assert json.loads(archive.read("labels.json")) == list(tiny.dataset.classes)
    assert config["image_size"] == 32 and config["resize"] == "crop"
    assert config["dataset_id"] == tiny.dataset.id and config["backbone"] == "mobilenet_v2"
    assert metrics["evaluation"]["classes"] == list(tiny.dataset.classes)
    assert 0.0 <= metrics["evaluation"]["accuracy"] <= 1.0
    for heading in ("## Data", "## Model and training", "## Metrics", "## Intended use", "## Limits"):
        assert heading in card
    assert "Confusion matrix" in card and "| true \\ predicted | blue | green | red |" in card


def test_bundle_holds_a_self_contained_html_report(tiny, bundle):
    report = zipfile.ZipFile(bundle).read("REPORT.html").decode()
    assert report.startswith("<!doctype html>") and "<script" not in report and "http" not in report
    metrics = json.loads(zipfile.ZipFile(bundle).read("metrics.json"))
    assert f"accuracy {metrics['evaluation']['accuracy']:.1%}" in report
    for part in ("Learning curves", "<svg", "Confusion matrix", "<th>precision</th>", "Data"):
        assert part in report


def _predict_in_fresh_process(bundle, images, folder, runtime="auto", expect_runtime="LiteRT (model.tflite)"):
    """Unpack the bundle and run its predict.py in a new interpreter; returns its JSON output."""
    zipfile.ZipFile(bundle).extractall(folder)
    # Run from the unpacked folder with a clean path: the project's `core` cannot be imported there.
    code = ("import runpy, sys\n"
            f"sys.argv = ['predict.py', '--json', '--top-k', '3', '--runtime', '{runtime}', *sys.argv[1:]]\n"
            "try:\n    runpy.run_path('predict.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'core' not in sys.modules and 'streamlit' not in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code, *map(str, images)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"runtime: {expect_runtime}" in done.stderr
    return json.loads(done.stdout)


def _assert_same_predictions(fresh, app):
    assert [r["label"] for r in fresh] == [r["label"] for r in app]
    np.testing.assert_allclose([[p for _, p in r["top_k"]] for r in fresh],
                               [[p for _, p in r["top_k"]] for r in app], atol=1e-5)


def test_bundle_predicts_in_fresh_process_like_the_app(tiny, bundle, tmp_path):
    images = tiny.dataset.paths("val")
    fresh = _predict_in_fresh_process(bundle, images, tmp_path / "unpacked")
    _assert_same_predictions(fresh, Predictor.from_run(tiny.workspace, tiny.run_id).predict_images(images, top_k=3))


def test_bundle_script_on_keras_answers_like_on_litert(tiny, bundle, tmp_path):
    images = tiny.dataset.paths("val")
    on_keras = _predict_in_fresh_process(bundle, images, tmp_path / "keras", runtime="keras",
                                         expect_runtime="Keras (model.keras)")
    _assert_same_predictions(on_keras, _predict_in_fresh_process(bundle, images, tmp_path / "litert"))


@pytest.mark.real
def test_real_mobilenet_run_bundle_predicts_the_same_in_fresh_process(keras_home, tmp_path):
    """The contract's model (preprocessing layers, nested backbone, head) reloads in safe mode elsewhere."""
    from core.config import TrainConfig
    from core.training.trainer import train_model
    from core.workspace import Workspace
    from tests.factories import make_tiny_dataset

    workspace = Workspace.open(tmp_path / "workspace")
    dataset = make_tiny_dataset(workspace, tmp_path, per_class=5)
    config = TrainConfig(dataset_id=dataset.id, backbone="mobilenet_v2", image_size=224, epochs=1,
                         batch_size=8, early_stopping_patience=0)
    record = train_model(config, workspace)
    assert record["status"] == "done", record.get("error")
    bundle = export_bundle(workspace, record["run_id"], tmp_path / "real.zip")
    images = dataset.paths("val") + dataset.paths("train")[:4]
    app = Predictor.from_run(workspace, record["run_id"]).predict_images(images, top_k=3)
    assert len({round(r["probability"], 4) for r in app}) > 1  # real features: answers differ per image
    _assert_same_predictions(_predict_in_fresh_process(bundle, images, tmp_path / "unpacked"), app)


def test_bundle_reloads_through_predictor_from_zip_and_folder(tiny, bundle, tmp_path):
    zipfile.ZipFile(bundle).extractall(tmp_path / "unpacked")
    images = tiny.dataset.paths("val")[:4]
    expected = Predictor.from_run(tiny.workspace, tiny.run_id).predict_probabilities(images)
    for source in (bundle, tmp_path / "unpacked"):
        predictor = Predictor.from_bundle(source)
        assert predictor.classes == tiny.dataset.classes and predictor.image_size == 32
        assert predictor.runtime == "litert"  # from the bundle's model.tflite
        np.testing.assert_allclose(predictor.predict_probabilities(images), expected, atol=1e-6)


def test_parity_of_tflite_float_dynamic_and_savedmodel(tiny):
    report = check_parity(tiny.workspace, tiny.run_id, ["bundle", "tflite", "tflite_dynamic", "savedmodel"])
    for fmt, row in report.items():
        assert row["images"] == len(tiny.dataset.paths("val"))
        assert row["agreement"] >= MIN_AGREEMENT, (fmt, row)
        assert row["passed"], (fmt, row)
    for fmt in ("bundle", "tflite", "savedmodel"):
        assert report[fmt]["max_abs_diff"] <= FLOAT_TOLERANCE
    assert report["tflite_dynamic"]["tolerance_on"] == "mean_abs_diff"
    assert report["tflite_dynamic"]["mean_abs_diff"] <= QUANTIZED_MEAN_TOLERANCE


def test_tflite_files_are_written_and_run(tiny, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    plain = export_tflite(tiny.workspace, tiny.run_id, tmp_path / "model")
    dynamic = export_tflite(tiny.workspace, tiny.run_id, tmp_path, quantize="dynamic")
    assert plain == tmp_path / "model.tflite" and dynamic.name.endswith("-dynamic.tflite")
    interpreter = Interpreter(model_path=str(plain))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape"][1:]) == [32, 32, 3] and detail["dtype"] == np.float32


def test_savedmodel_serves_raw_pixels(tiny, tmp_path):
    import tensorflow as tf

    path = export_savedmodel(tiny.workspace, tiny.run_id, tmp_path / "saved")
    loaded = tf.saved_model.load(str(path))
    batch = np.stack([prepare_image(load_rgb_image(p), 32) for p in tiny.dataset.paths("val")[:3]])
    expected = Predictor.from_run(tiny.workspace, tiny.run_id).predict_arrays(batch)
    np.testing.assert_allclose(loaded.serve(tf.constant(batch)).numpy(), expected, atol=FLOAT_TOLERANCE)


def test_export_errors_are_export_or_run_errors(tiny, tmp_path):
    with pytest.raises(ExportError, match="Unknown export format"):
        export_model(tiny.workspace, tiny.run_id, "onnx", tmp_path / "x")
    with pytest.raises(ExportError, match="TFLite only"):
        export_model(tiny.workspace, tiny.run_id, "bundle", tmp_path / "x", quantize="dynamic")
    with pytest.raises(RunError, match="does not exist"):
        export_bundle(tiny.workspace, "no-such-run", tmp_path / "x.zip")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    (tmp_path / "taken" / f"{tiny.run_id}-savedmodel").mkdir()
    (tmp_path / "taken" / f"{tiny.run_id}-savedmodel" / "f").write_text("x")
    with pytest.raises(ExportError, match="already exists"):
        export_savedmodel(tiny.workspace, tiny.run_id, tmp_path / "taken")


def test_run_report_is_the_html_card_of_the_runs_headline_split(tiny):
    from core.delivery.report import run_report

    report = run_report(tiny.workspace, tiny.run_id)
    from core import runs

    headline = runs.load_run(tiny.workspace, tiny.run_id).get("headline") or {}
    split = {"val": "validation", "test": "test"}[headline.get("split", "val")]
    assert f"On the {split} split: accuracy" in report and "<script" not in report


def test_savedmodel_of_a_model_with_list_inputs_serves_one_batch_of_pixels(tmp_path):
    """A head swap builds ``keras.Model(model.inputs, ...)``: a one-item input list, which ``model.export``
    would serve as a list, so ``serve(batch)`` (and the parity check) failed for feature-extraction runs."""
    import keras
    import tensorflow as tf

    from core.models.conversion import export_saved_model

    image = keras.Input((8, 8, 3), name="image")
    base = keras.Model(image, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(image)))
    model = keras.Model(base.inputs, base.output)  # inputs as a list, as replace_head makes them
    export_saved_model(model, tmp_path / "saved")
    batch = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    served = loaded.serve(tf.constant(batch)).numpy()
    np.testing.assert_allclose(served, np.asarray(model(batch)), atol=1e-6)
