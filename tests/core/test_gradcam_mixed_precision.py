"""Grad-CAM on a model trained on a GPU: mixed_float16 layers, saved and reloaded, on this CPU."""

from __future__ import annotations

import keras
import numpy as np

from core.insight.gradcam import compute_gradcam
from core.models.backbones import get_backbone
from core.models.classifier import build_classifier
from core.models.weights import NO_WEIGHTS


def test_gradcam_works_for_a_model_built_under_mixed_float16(tmp_path):
    spec = get_backbone("mobilenet_v2")
    keras.mixed_precision.set_global_policy("mixed_float16")  # what configure_precision picks on a GPU
    try:
        model = build_classifier(spec, image_size=96, num_classes=3, weights=NO_WEIGHTS)
        model.save(tmp_path / "model.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert reloaded.get_layer("pool").dtype_policy.name == "mixed_float16"  # the policy travels with the file
    image = np.random.default_rng(0).uniform(0, 255, (96, 96, 3)).astype("float32")
    heatmap, index, probabilities = compute_gradcam(reloaded, image)
    assert heatmap.shape == (96, 96) and heatmap.dtype == np.float32
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0
    assert probabilities.dtype == np.float32 and abs(float(probabilities.sum()) - 1.0) < 1e-3
    assert index == int(np.argmax(probabilities))
    keras.backend.clear_session()
