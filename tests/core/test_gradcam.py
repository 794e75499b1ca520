"""Grad-CAM: right shape for every backbone, hottest over a planted object, a readable overlay."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.errors import ConfigError
from core.insight.gradcam import compute_gradcam, jet_colors, overlay_heatmap
from core.models.backbones import BACKBONES, get_backbone
from core.models.classifier import build_classifier, feature_extractor, head_of
from core.models.weights import NO_WEIGHTS

SIZE, SQUARE = 224, 64


def _noise(rng) -> np.ndarray:
    return rng.uniform(40, 160, (SIZE, SIZE, 3)).astype("float32")


def _with_square(rng, top: int, left: int) -> np.ndarray:
    image = _noise(rng)
    image[top:top + SQUARE, left:left + SQUARE] = (250, 230, 40)
    return image


@pytest.fixture(scope="module")
def square_detector(keras_home):
    """MobileNetV2 with the real ImageNet weights and a head trained on embeddings: class 0 = a yellow square
    somewhere on noise, class 1 = noise only."""
    import keras

    from core.models.weights import resolve_weights

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images, labels = [], []
    for index in range(32):
        if index % 2 == 0:
            top, left = rng.integers(0, SIZE - SQUARE, 2)
            images.append(_with_square(rng, top, left))
        else:
            images.append(_noise(rng))
        labels.append(index % 2)
    spec = get_backbone("mobilenet_v2")
    model = build_classifier(spec, image_size=SIZE, num_classes=2, weights=resolve_weights(spec, SIZE), dropout=0.0)
    embeddings = feature_extractor(model).predict(np.stack(images), verbose=0)
    head = head_of(model)
    head.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    head.fit(embeddings, np.array(labels), epochs=30, batch_size=16, verbose=0)
    return model


@pytest.mark.parametrize(("top", "left"), [(10, 10), (150, 150), (20, 140)])
def test_heatmap_is_hottest_over_the_planted_object(square_detector, top, left):
    image = _with_square(np.random.default_rng(top + left), top, left)
    heatmap, class_index, probabilities = compute_gradcam(square_detector, image)
    assert class_index == 0 and probabilities[0] > 0.9
    assert heatmap.shape == (SIZE, SIZE) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and 0.9 < heatmap.max() <= 1.0
    inside = np.zeros_like(heatmap, dtype=bool)
    inside[top:top + SQUARE, left:left + SQUARE] = True
    assert heatmap[inside].mean() > 2.5 * heatmap[~inside].mean()
    # The peak lies on the square, give or take one cell of the 7x7 feature map (32 px).
    peak_y, peak_x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert top - 32 <= peak_y < top + SQUARE + 32 and left - 32 <= peak_x < left + SQUARE + 32


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_gradcam_runs_for_every_backbone(name):
    import keras

    spec = get_backbone(name)
    size = min(spec.allowed_sizes)
    model = build_classifier(spec, image_size=size, num_classes=3, weights=NO_WEIGHTS)
    image = np.random.default_rng(1).uniform(0, 255, (size, size, 3)).astype("float32")
    heatmap, class_index, probabilities = compute_gradcam(model, image, class_index=2)
    assert heatmap.shape == (size, size) and np.isfinite(heatmap).all()
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0
    assert class_index == 2 and probabilities.shape == (3,)
    np.testing.assert_allclose(probabilities, model(image[None], training=False).numpy()[0], atol=1e-5)
    keras.backend.clear_session()


def test_gradcam_refuses_a_wrong_image_size_or_class():
    model = build_classifier(get_backbone("mobilenet_v2"), image_size=96, num_classes=2, weights=NO_WEIGHTS)
    with pytest.raises(ConfigError, match=r"\(96, 96, 3\)"):
        compute_gradcam(model, np.zeros((64, 64, 3)))
    with pytest.raises(ConfigError, match="classes 0 to 1"):
        compute_gradcam(model, np.zeros((96, 96, 3)), class_index=5)


def test_overlay_colours_hot_regions_red_and_keeps_the_image_size():
    image = Image.new("RGB", (100, 80), (128, 128, 128))
    heatmap = np.zeros((7, 7), dtype="float32")
    heatmap[:, 4:] = 1.0
    overlay = np.asarray(overlay_heatmap(image, heatmap, alpha=0.5))
    assert overlay.shape == (80, 100, 3)
    assert overlay[40, 95, 0] > overlay[40, 95, 2]  # hot: red over blue
    assert overlay[40, 5, 2] > overlay[40, 5, 0]  # cold: blue over red
    assert tuple(jet_colors(np.array([0.0, 1.0]))[:, 0]) == (0, 128)


def test_repeated_calls_reuse_a_traced_function_with_identical_results(square_detector):
    image = _with_square(np.random.default_rng(7), 80, 80)
    first = compute_gradcam(square_detector, image)
    for _ in range(2):
        again = compute_gradcam(square_detector, image, class_index=first[1])
        np.testing.assert_allclose(again[0], first[0], atol=1e-5)
        np.testing.assert_allclose(again[2], first[2], atol=1e-6)
