"""Measured speeds per runtime, on real images of the dataset, and the estimates built on them."""

from __future__ import annotations

import json

import pytest

from core.config import TrainConfig
from core.models.litert import ConvertedStore, extractor_key
from core.models.speed import (
    estimate_seconds,
    expected_speed,
    known_speeds,
    measure_speed,
    record_speed,
    speed_figures,
)
from tests.factories import make_tiny_dataset


def test_measure_speed_times_real_images_of_the_dataset_on_the_runtime_a_run_would_use(workspace, tmp_path):
    dataset = make_tiny_dataset(workspace, tmp_path, per_class=6)
    speed = measure_speed(workspace, "mobilenet_v2", 96, dataset=dataset, weights="none", batch_size=8)
    figure = speed_figures(workspace, "mobilenet_v2", 96)["keras"]
    assert speed > 0 and figure.images_per_s == pytest.approx(speed, abs=0.01)
    # 18 images in batches of 8: the first full batch warms up, the next one is timed, the short one is not.
    assert len(dataset.entries) == 18 and figure.measured_on == f"8 images of {dataset.name}"
    assert figure.label.endswith("images/s with Keras (TensorFlow)")


def test_once_converted_the_expected_speed_is_litert_s(workspace, keras_home, tmp_path, monkeypatch):
    from core.models.backbones import get_backbone
    from core.models.weights import resolve_weights

    # A machine of its own: earlier tests of the session may have converted MobileNetV2 into the shared cache.
    monkeypatch.setenv("TRANSFER_STUDIO_LITERT_CACHE", str(tmp_path / "litert"))
    fingerprint = resolve_weights(get_backbone("mobilenet_v2"), 224, "imagenet").fingerprint
    record_speed(workspace, "mobilenet_v2", 224, 120.0, runtime="keras")
    record_speed(workspace, "mobilenet_v2", 224, 310.0, runtime="litert")
    plan, figure = expected_speed(workspace, "mobilenet_v2", 224, num_images=400)
    assert plan.runtime == "keras" and figure.images_per_s == 120.0  # nothing converted on this machine yet
    ConvertedStore().save(extractor_key("mobilenet_v2", 224, fingerprint), b"not read by the plan", {})
    plan, figure = expected_speed(workspace, "mobilenet_v2", 224, num_images=400)
    assert plan.runtime == "litert" and figure.images_per_s == 310.0 and "LiteRT" in figure.label
    assert known_speeds(workspace) == {"mobilenet_v2@224": 310.0}


def test_an_older_speeds_file_reads_as_keras_figures(workspace):
    (workspace.root / "speeds.json").write_text(json.dumps({"resnet50@224": 35.0}))
    assert speed_figures(workspace, "resnet50", 224)["keras"].images_per_s == 35.0


def test_the_estimate_counts_the_conversion_and_the_feature_runtime():
    config = TrainConfig(dataset_id="d", epochs=10)
    plain = estimate_seconds(config, images_per_s=100.0, num_train=300, num_total=400)
    fast = estimate_seconds(config, images_per_s=100.0, num_train=300, num_total=400,
                            features_images_per_s=400.0, conversion_s=7.0)
    assert plain == pytest.approx(4.0 + 0.5) and fast == pytest.approx(7.0 + 1.0 + 0.5)
    assert estimate_seconds(config, images_per_s=None, num_train=300, num_total=400) is None


def test_with_the_features_cached_a_head_run_needs_no_measured_speed():
    """The feature pass is skipped, so an unmeasured runtime (e.g. the plan switched to LiteRT) is no obstacle."""
    head = TrainConfig(dataset_id="d", epochs=10)
    assert estimate_seconds(head, images_per_s=None, num_train=300, num_total=400,
                            features_cached=True) == pytest.approx(0.5)
    tune = TrainConfig(dataset_id="d", epochs=10, strategy="fine-tune")
    assert estimate_seconds(tune, images_per_s=None, num_train=300, num_total=400, features_cached=True) is None
