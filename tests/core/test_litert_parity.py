"""The LiteRT path gives Keras' embeddings for every registry backbone, and Keras' answers on real weights.

Converting a backbone takes a few seconds on a quiet 2-core machine (twelve of them: the slowest test
file of the suite, kept because parity for every backbone is the contract of the fast path).
"""

from __future__ import annotations

import numpy as np
import pytest

from core.models.backbones import BACKBONES, get_backbone
from core.models.classifier import build_classifier, feature_extractor
from core.models.litert import PARITY_TOLERANCE, ConvertedStore, LiteRTModel, convert_and_store, extractor_key
from core.models.weights import NO_WEIGHTS, resolve_weights


def _real_images(size: int, count: int = 4) -> np.ndarray:
    """Smooth colour gradients with noise: activations of every scale, unlike constant or uniform noise."""
    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size))],
                    axis=-1)
    return np.stack([np.clip(base * rng.uniform(0.3, 1.0) + rng.normal(0, 20, base.shape), 0, 255)
                     for _ in range(count)]).astype(np.float32)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_litert_embeddings_match_keras_for_every_backbone(name, tmp_path):
    spec = get_backbone(name)
    size = max(spec.min_size, 32)
    extractor = feature_extractor(build_classifier(spec, image_size=size, num_classes=2, weights=NO_WEIGHTS))
    store = ConvertedStore(tmp_path)
    content, seconds = convert_and_store(extractor, extractor_key(name, size, "test"), store, backbone=name)
    images = _real_images(size)
    expected = np.asarray(extractor.predict_on_batch(images))
    fast = LiteRTModel(content).predict_on_batch(images)
    assert fast.shape == expected.shape == (len(images), extractor.output_shape[-1])
    scale = max(float(np.abs(expected).max()), 1e-6)
    assert float(np.abs(fast - expected).max()) <= PARITY_TOLERANCE * scale, name
    assert seconds > 0 and store.has(extractor_key(name, size, "test"))


@pytest.mark.real
def test_real_mobilenet_head_answers_identically_on_litert_and_keras(keras_home, shared_data, tmp_path,
                                                                      monkeypatch):
    """hymenoptera, ImageNet MobileNetV2: top-1 of the trained head is the same on every validation image."""
    from core.config import TrainConfig
    from core.data.datasets import ingest
    from core.models.prediction import Predictor
    from core.training.trainer import train_model
    from core.workspace import Workspace

    monkeypatch.setenv("TRANSFER_STUDIO_LITERT", "off")  # the run itself computes its embeddings on Keras
    workspace = Workspace.open(tmp_path / "workspace")
    dataset = ingest(shared_data("hymenoptera.zip"), workspace)
    record = train_model(TrainConfig(dataset_id=dataset.id, epochs=5, image_size=224), workspace)
    assert record["status"] == "done" and record["extraction"]["runtime"] == "keras"
    keras_predictor = Predictor.from_run(workspace, record["run_id"])
    assert keras_predictor.runtime == "keras"  # nothing converted on this machine yet
    spec = get_backbone("mobilenet_v2")
    weights = resolve_weights(spec, 224, "imagenet")
    extractor = feature_extractor(keras_predictor.model)
    convert_and_store(extractor, extractor_key("mobilenet_v2", 224, weights.fingerprint))
    fast_predictor = Predictor.from_run(workspace, record["run_id"])
    assert fast_predictor.runtime == "litert"
    images = dataset.paths("val")
    keras_answers = keras_predictor.predict_probabilities(images)
    fast_answers = fast_predictor.predict_probabilities(images)
    assert len(images) == 153
    np.testing.assert_array_equal(fast_answers.argmax(axis=1), keras_answers.argmax(axis=1))
    assert float(np.abs(fast_answers - keras_answers).max()) < 1e-3
