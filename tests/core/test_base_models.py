"""Transfer from a saved Keras model: a finished run or a model file as the base of a new run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.cli import main
from tests.factories import make_class_folders

SIZE = 32


def _dataset(workspace, root, classes):
    from core.data.datasets import ingest

    source = make_class_folders(root, per_class=10, size=40, classes=classes)
    return ingest(source, workspace, val_fraction=0.3, seed=0)


def _functional_file(path, *, rescale=True, lam=False):
    """A small image classifier: (Rescaling) -> conv -> BN -> conv -> global pool -> dense 8 -> softmax 4."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs) if rescale else inputs
    if lam:
        x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(8, activation="relu", name="embed")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="old_classes")(x)
    keras.Model(inputs, outputs, name="colleague_model").save(path)
    return path


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    from core.workspace import Workspace

    root = tmp_path_factory.mktemp("bases")
    workspace = Workspace.open(root / "workspace")
    colours = _dataset(workspace, root / "colours", ("red", "green", "blue"))
    pair = _dataset(workspace, root / "pair", ("green", "blue"))
    return workspace, colours, pair, root


def _train(space, *argv):
    workspace = space[0]
    assert main(["train", *argv, "--json", "--workspace", str(workspace.root)]) == 0


def _printed(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_model_file_is_stored_with_its_hash_and_cut_where_its_features_are(space, tmp_path):
    from core.models.base_files import bases_dir, store_base_file

    path = _functional_file(tmp_path / "colleague.keras")
    stored = store_base_file(space[0], path)
    assert stored.path.is_relative_to(bases_dir(space[0])) and stored.path.read_bytes() == path.read_bytes()
    assert stored.base_id == "file-" + stored.sha256[:12] and stored.input_size == SIZE
    assert stored.default_cut == "gap" and stored.carries_preprocessing  # the last pooled layer before the classifier
    shapes = {c["name"]: c["output_shape"] for c in stored.candidates}
    assert shapes["conv2"] == [None, 14, 14, 16] and shapes["embed"] == [None, 8]
    assert store_base_file(space[0], path).base_id == stored.base_id  # the same file is stored once


def test_a_model_file_as_base_trains_evaluates_predicts_and_explains(space, tmp_path, capsys):
    from core.insight.evaluation import evaluate_run
    from core.insight.gradcam import compute_gradcam
    from core.models.prediction import Predictor
    from core.runs import load_run, load_run_model

    workspace, colours = space[0], space[1]
    path = _functional_file(tmp_path / "colleague.keras")
    _train(space, colours.id, "--base-model", str(path), "--cut-layer", "embed", "--batch-size", "8")
    printed = _printed(capsys)
    record = load_run(workspace, printed["run_id"])
    assert record["status"] == "done", record.get("error")
    base = record["base"]
    assert base["kind"] == "file" and base["cut_layer"] == "embed" and base["input_scaling"] == "raw"
    assert base["file_name"] == "colleague.keras" and base["sha256"] in _sha(path)
    assert record["config"]["base_model"] == base["base_id"] and record["image_size"] == SIZE
    model = load_run_model(workspace, printed["run_id"])
    # The embedding is the file's own 'embed' output: the new model's features equal the colleague model's.
    import keras

    original = keras.saving.load_model(path, safe_mode=True)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    expected = keras.Model(original.inputs, original.get_layer("embed").output)(pixels)
    from core.models.classifier import feature_extractor

    assert np.abs(np.asarray(feature_extractor(model)(pixels)) - np.asarray(expected)).max() < 1e-5
    assert model.get_layer("pool").name == "pool" and len(model.get_layer("backbone").output.shape) == 4
    result = evaluate_run(workspace, printed["run_id"], "val")
    assert result.num_images == len(colours.split_entries("val"))
    probabilities = Predictor.from_run(workspace, printed["run_id"]).predict_arrays(pixels)
    assert probabilities.shape == (2, 3)
    heatmap, _, _ = compute_gradcam(model, pixels[0])  # on the file's last feature map (conv2)
    assert heatmap.shape == (SIZE, SIZE)


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_embedding_cache_is_keyed_by_the_file_and_its_cut(space, tmp_path, capsys):
    from core.runs import load_run

    workspace, colours = space[0], space[1]
    path = _functional_file(tmp_path / "colleague.keras")
    keys = []
    for cut in ("gap", "embed", "gap"):
        _train(space, colours.id, "--base-model", str(path), "--cut-layer", cut, "--head", "linear")
        record = load_run(workspace, _printed(capsys)["run_id"])
        keys.append((record["feature_key"], record["features_cached"]))
    assert keys[0][0] != keys[1][0] and keys[2] == (keys[0][0], True)


def test_a_run_is_the_base_of_a_run_on_other_classes_and_fine_tunes(space, tmp_path, capsys):
    from core.models.classifier import feature_extractor
    from core.runs import load_history, load_run, load_run_model

    workspace, colours, pair = space[0], space[1], space[2]
    path = _functional_file(tmp_path / "colleague.keras")
    _train(space, colours.id, "--base-model", str(path), "--head", "linear")
    first = _printed(capsys)["run_id"]
    _train(space, pair.id, "--base-model", first, "--strategy", "fine-tune", "--fine-tune-epochs", "2",
           "--batch-size", "8", "--early-stopping-patience", "0")
    second = _printed(capsys)["run_id"]
    record = load_run(workspace, second)
    assert record["status"] == "done", record.get("error")
    assert record["classes"] == ["blue", "green"] and record["base"]["kind"] == "run"
    assert record["base"]["run_id"] == first and first in record["base"]["description"]
    assert record["weights_fingerprint"] == "run-" + record["base"]["model_sha256"][:12]
    assert [h["phase"] for h in load_history(workspace, second)] == [1, 2, 2]
    # the second run's base started as the first run's feature extractor, preprocessing included
    base_model = load_run_model(workspace, first)
    assert {layer.name for layer in load_run_model(workspace, second).layers} >= {"backbone", "pool", "head"}
    pixels = np.random.default_rng(1).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    assert np.asarray(feature_extractor(base_model)(pixels)).shape == (1, 16)
    assert record["phase2_trainable"]["trainable_params"] > 0


def test_continuing_a_run_trained_on_a_model_file_keeps_its_base(space, tmp_path, capsys):
    from core.runs import load_run

    workspace, colours = space[0], space[1]
    path = _functional_file(tmp_path / "colleague.keras")
    _train(space, colours.id, "--base-model", str(path), "--head", "linear")
    first = _printed(capsys)["run_id"]
    _train(space, colours.id, "--continue", first, "--head", "linear")
    printed = _printed(capsys)
    record = load_run(workspace, printed["run_id"])
    assert record["status"] == "done" and record["continued_from"]["run_id"] == first
    assert record["config"]["base_model"] == load_run(workspace, first)["config"]["base_model"]
    assert printed["val_accuracy_before"] is not None
    # the same classes, or no continuing: the pair dataset lacks 'red'
    code = main(["train", space[2].id, "--continue", first, "--workspace", str(workspace.root)])
    assert code == 2 and "red" in capsys.readouterr().err
    from ui.runs_views import runs_table

    table = runs_table([load_run(workspace, first)])
    assert table["base"][0].startswith("uploaded file colleague.keras (sha256 ") and "cut at gap" in table["base"][0]


@pytest.mark.parametrize(("make", "expected"), [
    ("lambda", "contains a Lambda layer"),
    ("not_a_model", "is not a saved Keras model"),
    ("text_h5", "is not a saved Keras model"),
    ("no_image", "not RGB images"),
])
def test_files_that_cannot_be_a_base_are_refused_with_one_error_line(space, tmp_path, capsys, make, expected):
    import keras

    from core.models.base_files import bases_dir

    path = tmp_path / ("model.h5" if make == "text_h5" else "model.keras")
    if make == "lambda":
        _functional_file(path, lam=True)
    elif make == "no_image":
        inputs = keras.Input((10,))
        keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(path)
    else:
        path.write_text("these are not the weights you are looking for")
    before = sorted(bases_dir(space[0]).glob("*")) if bases_dir(space[0]).exists() else []
    code = main(["train", space[1].id, "--base-model", str(path), "--workspace", str(space[0].root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: model") and expected in err[0]
    assert (sorted(bases_dir(space[0]).glob("*")) if bases_dir(space[0]).exists() else []) == before


def test_a_cut_layer_that_does_not_exist_is_refused_naming_the_candidates(space, tmp_path, capsys):
    path = _functional_file(tmp_path / "colleague.keras")
    code = main(["train", space[1].id, "--base-model", str(path), "--cut-layer", "fc7", "--workspace",
                 str(space[0].root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no layer 'fc7'" in err[0] and "gap (None, 16)" in err[0]


def test_a_file_without_its_own_scaling_asks_how_it_expects_its_pixels(space, tmp_path, capsys):
    path = _functional_file(tmp_path / "bare.keras", rescale=False)
    code = main(["train", space[1].id, "--base-model", str(path), "--workspace", str(space[0].root)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--input-scaling" in err and "does not scale its own pixels" in err


def test_a_mobilenet_v2_saved_whole_is_a_base_with_its_own_input_size(space, tmp_path, capsys):
    import keras

    from core.runs import load_run, load_run_model

    path = tmp_path / "mobilenet_features.keras"
    keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None,
                                   pooling="avg").save(path)
    _train(space, space[1].id, "--base-model", str(path), "--input-scaling", "symmetric", "--head", "linear")
    record = load_run(space[0], _printed(capsys)["run_id"])
    assert record["status"] == "done", record.get("error")
    assert record["image_size"] == 96 and record["base"]["cut_layer"] == "global_average_pooling2d"
    model = load_run_model(space[0], record["run_id"])
    assert model.get_layer("backbone").output.shape[1:] == (3, 3, 1280)  # Grad-CAM's map: out_relu
    assert [layer.name for layer in model.layers][:3] == ["image", "preprocess_scale", "backbone"]


def test_a_run_on_a_model_file_exports_with_its_base_on_the_model_card(space, tmp_path, capsys):
    import zipfile

    from core.delivery.export import check_parity, export_model

    path = _functional_file(tmp_path / "colleague.keras")
    _train(space, space[1].id, "--base-model", str(path), "--cut-layer", "embed", "--head", "linear")
    run_id = _printed(capsys)["run_id"]
    bundle = export_model(space[0], run_id, "bundle", tmp_path / "bundle.zip")
    card = zipfile.ZipFile(bundle).read("MODEL_CARD.md").decode()
    assert f"uploaded file `colleague.keras` (sha256 `{_sha(path)}`), cut at layer `embed`" in card
    parity = check_parity(space[0], run_id, ("bundle", "tflite"), max_images=8)
    assert all(row["agreement"] == 1.0 for row in parity.values()), parity


def test_a_legacy_h5_file_is_a_base_too(space, tmp_path):
    from core.models.base_files import store_base_file

    stored = store_base_file(space[0], _functional_file(tmp_path / "colleague.h5"))
    assert stored.path.suffix == ".h5" and stored.default_cut == "gap" and stored.input_size == SIZE


def test_too_large_files_and_custom_objects_are_refused(space, tmp_path, monkeypatch):
    import keras

    from core.errors import ModelImportError
    from core.models import base_files

    path = _functional_file(tmp_path / "colleague.keras")
    monkeypatch.setattr(base_files, "MAX_BASE_BYTES", 1000)
    with pytest.raises(ModelImportError, match="colleague.keras is .* MB; a base model may be at most"):
        base_files.store_base_file(space[0], path)
    monkeypatch.undo()

    @keras.saving.register_keras_serializable("someone")
    class Doubling(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((SIZE, SIZE, 3))
    keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(Doubling()(inputs))).save(tmp_path / "custom.keras")
    keras.saving.get_custom_objects().pop("someone>Doubling")
    with pytest.raises(ModelImportError, match="needs custom objects"):
        base_files.store_base_file(space[0], tmp_path / "custom.keras")


def test_a_cut_with_no_feature_map_below_trains_on_its_vector_and_grad_cam_says_why_not(space, tmp_path):
    import keras

    from core.errors import ConfigError
    from core.insight.gradcam import compute_gradcam
    from core.models.base_models import resolve_base

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Flatten(name="flat")(inputs)
    keras.Model(inputs, keras.layers.Dense(8, name="dense_features")(x)).save(tmp_path / "flat.keras")
    base = resolve_base(space[0], str(tmp_path / "flat.keras"), "dense_features", "unit")
    model = base.build_classifier(num_classes=2)
    assert model.get_layer("pool").__class__.__name__ == "Identity" and model.output_shape == (None, 2)
    with pytest.raises(ConfigError, match="no feature map"):
        compute_gradcam(model, np.zeros((SIZE, SIZE, 3), "float32"))
