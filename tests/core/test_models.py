"""The self-contained classifier: builds for every backbone, reloads in plain Keras, trainable modes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from core.errors import ConfigError
from core.models.backbones import BACKBONES, get_backbone
from core.models.classifier import build_classifier, feature_extractor, head_of, set_backbone_trainable
from core.models.weights import NO_WEIGHTS


def _images(size: int, count: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


def _keras_counts(model) -> tuple[int, int]:
    from keras.src.utils.summary_utils import count_params

    return count_params(model.trainable_weights), count_params(model.non_trainable_weights)


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    import keras

    yield
    keras.backend.clear_session()


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_and_outputs_probabilities(name):
    import keras

    spec = get_backbone(name)
    size = min(spec.allowed_sizes)
    model = build_classifier(spec, image_size=size, num_classes=3, weights=NO_WEIGHTS)
    backbone = model.get_layer("backbone")
    assert backbone.count_params() == spec.params  # the registry's figure is Keras' own
    layer_names = [layer.name for layer in backbone.layers]
    first_tuned = len(layer_names) - spec.default_fine_tune_layers()
    if spec.fine_tune_from:
        assert layer_names[first_tuned] == spec.fine_tune_from
    else:
        assert layer_names[first_tuned - 1] == spec.fine_tune_after
    if spec.preprocessing == "builtin":
        # The base must really scale pixels itself, or raw 0..255 values would reach its first convolution.
        own = (keras.layers.Rescaling, keras.layers.Normalization)
        assert any(isinstance(layer, own) for layer in backbone.layers[:3])
    probabilities = keras.ops.convert_to_numpy(model(_images(size), training=False))
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    names = [layer.name for layer in model.layers]
    assert names[-3:] == ["backbone", "pool", "head"]
    assert head_of(model).get_layer("predictions").units == 3
    expected = {"tf": 1, "caffe": 1, "torch": 2, "builtin": 0}[spec.preprocessing]
    assert sum(name.startswith("preprocess_") for name in names) == expected


_RELOAD_SCRIPT = """
import json, sys
import numpy as np
import keras
results = {}
for name in json.loads(sys.argv[1]):
    model = keras.saving.load_model(f"{sys.argv[2]}/{name}.keras", safe_mode=True)
    images = np.load(f"{sys.argv[2]}/{name}_images.npy")
    results[name] = np.asarray(model.predict(images, verbose=0)).tolist()
results["project_modules"] = sorted(m for m in sys.modules if m == "core" or m.startswith("core."))
print("RESULT" + json.dumps(results))
"""


def test_saved_models_reload_with_safe_mode_in_a_process_with_only_keras(tmp_path):
    names = ["mobilenet_v2", "vgg16", "densenet121"]  # tf scaling, caffe convolution, torch normalization
    expected = {}
    for index, name in enumerate(names):
        spec = get_backbone(name)
        size = min(spec.allowed_sizes)
        model = build_classifier(spec, image_size=size, num_classes=4, weights=NO_WEIGHTS, hidden_units=8,
                                 seed=index)
        images = _images(size, seed=index)
        expected[name] = np.asarray(model.predict(images, verbose=0))
        model.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}_images.npy", images)
    completed = subprocess.run([sys.executable, "-c", _RELOAD_SCRIPT, json.dumps(names), str(tmp_path)],
                               capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.split("RESULT", 1)[1])
    assert results.pop("project_modules") == []
    for name in names:
        np.testing.assert_allclose(np.asarray(results[name]), expected[name], atol=1e-6)


def test_feature_extractor_and_head_give_the_full_models_probabilities():
    model = build_classifier(get_backbone("mobilenet_v2"), image_size=96, num_classes=3, weights=NO_WEIGHTS,
                             hidden_units=16)
    images = _images(96, count=4)
    embeddings = feature_extractor(model).predict(images, verbose=0)
    assert embeddings.shape == (4, 1280)
    np.testing.assert_allclose(head_of(model).predict(embeddings, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)


@pytest.mark.parametrize("name", ["mobilenet_v2", "vgg16"])
def test_trainable_counts_equal_keras_counts_in_each_mode(name):
    import keras

    spec = get_backbone(name)
    model = build_classifier(spec, image_size=min(spec.allowed_sizes), num_classes=3, weights=NO_WEIGHTS)
    head_params = head_of(model).count_params()
    backbone = model.get_layer("backbone")
    for mode in ("top", "frozen", "all", "top"):
        counts = set_backbone_trainable(model, mode)
        trainable, frozen = _keras_counts(model)
        assert (counts["trainable_params"], counts["frozen_params"]) == (trainable, frozen)
        assert trainable + frozen == model.count_params()
        if mode == "frozen":
            assert trainable == head_params and counts["trainable_layers"] == 0
        if mode == "top":
            top = backbone.layers[-spec.default_fine_tune_layers():]
            unfrozen = sum(layer.count_params() for layer in top
                           if not isinstance(layer, keras.layers.BatchNormalization))
            assert trainable == head_params + unfrozen
        if mode == "all":
            # Only BatchNormalization moving statistics (and the fixed caffe convolution) stay frozen.
            moving = sum(layer.count_params() // 2 for layer in backbone.layers
                         if isinstance(layer, keras.layers.BatchNormalization))
            caffe = 12 if spec.preprocessing == "caffe" else 0
            assert frozen == moving + caffe


def test_top_mode_unfreezes_only_the_top_layers_and_keeps_every_batchnorm_frozen():
    import keras

    model = build_classifier(get_backbone("mobilenet_v2"), image_size=96, num_classes=2, weights=NO_WEIGHTS)
    counts = set_backbone_trainable(model, "top", top_layers=20)
    layers = model.get_layer("backbone").layers
    batchnorms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batchnorms and not any(layer.trainable for layer in batchnorms)
    assert not any(layer.trainable_weights for layer in layers[:-20])
    assert counts["trainable_layers"] == sum(1 for layer in layers[-20:] if layer.trainable_weights) > 0


def test_fine_tuning_keeps_batchnorm_in_inference_mode_while_training(keras_home):
    from core.models.weights import resolve_weights

    spec = get_backbone("mobilenet_v2")
    model = build_classifier(spec, image_size=224, num_classes=2, weights=resolve_weights(spec, 224), dropout=0.0)
    set_backbone_trainable(model, "top", top_layers=60)
    images = _images(224, count=4)
    # fit() calls the model with training=True; a BatchNormalization layer not pinned to inference mode would
    # then normalise with this batch's statistics and change the output.
    np.testing.assert_allclose(model(images, training=True).numpy(), model(images, training=False).numpy(),
                               atol=1e-5)
    set_backbone_trainable(model, "all")
    assert not np.allclose(model(images, training=True).numpy(), model(images, training=False).numpy(), atol=1e-5)


def test_build_refuses_bad_arguments_with_config_errors():
    spec = get_backbone("inception_v3")
    with pytest.raises(ConfigError, match="at least 75"):
        build_classifier(spec, image_size=64, num_classes=2, weights=NO_WEIGHTS)
    with pytest.raises(ConfigError, match="2 classes"):
        build_classifier(get_backbone("mobilenet_v2"), image_size=96, num_classes=1, weights=NO_WEIGHTS)
    model = build_classifier(get_backbone("mobilenet_v2"), image_size=96, num_classes=2, weights=NO_WEIGHTS)
    with pytest.raises(ConfigError, match="frozen, top, all"):
        set_backbone_trainable(model, "some")
