"""LiteRT stand-ins for a trained model: the head in NumPy, the machine's extractor + head, fall-backs."""

from __future__ import annotations

import numpy as np
import pytest

from core.models.classifier import build_head
from core.models.fast_models import ComposedModel, HeadFunction, fast_model_for_run
from core.models.litert import ConvertedStore, convert_model, extractor_key

SIZE = 32


def _classifier():
    """Raw pixels -> tiny extractor -> ``pool`` -> ``head`` sub-model: the layout of ``build_classifier``."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), dtype="float32", name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    embedding = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    head = build_head(8, 3, dropout=0.2, hidden_units=5, seed=0)
    return keras.Model(inputs, head(embedding))


@pytest.fixture(scope="module")
def classifier():
    return _classifier()


def _run(strategy="feature-extraction", fingerprint="imagenet-test"):
    return {"config": {"strategy": strategy, "backbone": "mobilenet_v2"}, "image_size": SIZE,
            "weights_fingerprint": fingerprint}


def test_numpy_head_matches_the_keras_head_with_hidden_layer_and_dropout():
    head = build_head(16, 4, dropout=0.5, hidden_units=7, seed=3)
    embeddings = np.random.default_rng(0).normal(size=(10, 16)).astype("float32")
    fast = HeadFunction.from_keras(head)
    np.testing.assert_allclose(fast(embeddings), np.asarray(head(embeddings, training=False)), atol=1e-6)


def test_a_head_with_other_layers_is_left_to_keras():
    import keras

    inputs = keras.Input((4,))
    head = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.BatchNormalization()(inputs)))
    assert HeadFunction.from_keras(head) is None


def test_a_feature_extraction_run_answers_through_the_machine_extractor(classifier, tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("TRANSFER_STUDIO_LITERT_CACHE", str(tmp_path))
    extractor = keras.Model(classifier.inputs, classifier.get_layer("pool").output)
    content, _ = convert_model(extractor)
    ConvertedStore().save(extractor_key("mobilenet_v2", SIZE, "imagenet-test"), content, {})
    fast = fast_model_for_run(_run(), classifier, tmp_path / "model.keras")
    assert isinstance(fast, ComposedModel) and fast.runtime == "litert"
    images = np.random.default_rng(2).uniform(0, 255, (5, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(fast.predict_on_batch(images), classifier.predict_on_batch(images), atol=1e-5)
    # A fine-tuned backbone or random weights are not the machine's extractor: Keras answers.
    assert fast_model_for_run(_run("fine-tune"), classifier, tmp_path / "model.keras") is None
    assert fast_model_for_run(_run(fingerprint="none"), classifier, tmp_path / "model.keras") is None


def test_without_a_converted_extractor_the_run_answers_on_keras(classifier, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_LITERT_CACHE", str(tmp_path / "empty"))
    assert fast_model_for_run(_run(), classifier, tmp_path / "model.keras") is None


def test_a_model_tflite_older_than_model_keras_is_ignored(classifier, tmp_path):
    import os

    from core.models.fast_models import fast_model_for_file

    (tmp_path / "model.tflite").write_bytes(convert_model(classifier)[0])
    (tmp_path / "model.keras").write_bytes(b"newer")
    os.utime(tmp_path / "model.tflite", (1, 1))
    assert fast_model_for_file(tmp_path / "model.keras") is None
    os.utime(tmp_path / "model.tflite", None)
    assert fast_model_for_file(tmp_path / "model.keras").runtime == "litert"
