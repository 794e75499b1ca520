"""Weight resolution: configured folder, Keras cache, download attempt, clear failure."""

from __future__ import annotations

import os
import time

import pytest

from core.errors import ConfigError, WeightsError
from core.models import weights as weights_module
from core.models.backbones import get_backbone
from core.models.weights import WEIGHTS_DIR_ENV, resolve_weights, weights_available

SHARED_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


@pytest.fixture(autouse=True)
def _no_configured_folder(monkeypatch):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)


def _fail_download(spec, image_size):
    raise Exception("no network in this test")


def test_mobilenet_v2_224_resolves_from_the_keras_cache(keras_home):
    resolved = resolve_weights(get_backbone("mobilenet_v2"), 224)
    assert resolved.keras_weights == "imagenet"
    assert str(keras_home / "models" / SHARED_FILE) in resolved.description
    assert resolved.fingerprint == "imagenet-f45a8b9a35fb"


def test_file_in_weights_dir_is_passed_by_path(keras_home, tmp_path):
    spec = get_backbone("mobilenet_v2")
    target = tmp_path / spec.weights_file(160)
    os.symlink(keras_home / "models" / SHARED_FILE, target)
    resolved = resolve_weights(spec, 160, weights_dir=tmp_path)
    assert resolved.keras_weights == str(target)
    assert str(target) in resolved.description
    assert resolved.fingerprint == "imagenet-f45a8b9a35fb"


def test_environment_variable_names_the_weights_dir(keras_home, tmp_path, monkeypatch):
    spec = get_backbone("mobilenet_v2")
    os.symlink(keras_home / "models" / SHARED_FILE, tmp_path / spec.weights_file(224))
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    assert resolve_weights(spec, 224).keras_weights == str(tmp_path / spec.weights_file(224))


def test_weights_dir_file_loads_into_the_model(keras_home, tmp_path):
    import keras

    from core.models.classifier import build_classifier

    spec = get_backbone("mobilenet_v2")
    os.symlink(keras_home / "models" / SHARED_FILE, tmp_path / spec.weights_file(224))
    by_path = build_classifier(spec, image_size=224, num_classes=2,
                               weights=resolve_weights(spec, 224, weights_dir=tmp_path))
    from_cache = build_classifier(spec, image_size=224, num_classes=2, weights=resolve_weights(spec, 224))
    kernel = by_path.get_layer("backbone").get_layer("Conv1").get_weights()[0]
    assert (kernel == from_cache.get_layer("backbone").get_layer("Conv1").get_weights()[0]).all()
    keras.backend.clear_session()


def test_missing_weights_raise_an_error_naming_file_folder_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "_download", _fail_download)
    spec = get_backbone("vgg16")
    with pytest.raises(WeightsError) as caught:
        resolve_weights(spec, 224, weights_dir=tmp_path)
    message = str(caught.value)
    assert spec.weights_file(224) in message and str(tmp_path) in message
    assert "VGG16" in message and "from-scratch" in message


def test_real_keras_download_failure_becomes_a_weights_error_quickly(monkeypatch):
    # A refused local port makes Keras' real get_file fail at once, with or without internet access.
    monkeypatch.setitem(weights_module._SOURCES, "densenet121", ("http://127.0.0.1:9/", None))
    spec = get_backbone("densenet121")
    started = time.monotonic()
    with pytest.raises(WeightsError, match=spec.weights_file(224)):
        resolve_weights(spec, 224)
    assert time.monotonic() - started < 30
    assert not weights_available(spec, 224)


def test_cached_file_with_a_foreign_hash_is_passed_by_path(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "keras_cache_dir", lambda: tmp_path)
    spec = get_backbone("vgg16")
    (tmp_path / spec.weights_file(224)).write_bytes(b"not the published file")
    resolved = resolve_weights(spec, 224)
    assert resolved.keras_weights == str(tmp_path / spec.weights_file(224))
    assert "hash differs" in resolved.description


def test_weights_none_means_random_init_and_unknown_values_are_refused():
    resolved = resolve_weights(get_backbone("resnet50"), 224, "none")
    assert resolved.keras_weights is None and resolved.fingerprint == "none"
    with pytest.raises(ConfigError, match="imagenet"):
        resolve_weights(get_backbone("resnet50"), 224, "random")


def test_weights_available_checks_disk_only(keras_home, tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "_download", _fail_download)
    assert weights_available(get_backbone("mobilenet_v2"), 224)
    assert weights_available(get_backbone("mobilenet_v2"), 150)  # Keras loads the 224 file there
    assert not weights_available(get_backbone("mobilenet_v2"), 96)
    assert not weights_available(get_backbone("xception"), 299)
    (tmp_path / get_backbone("xception").weights_file(299)).write_bytes(b"x")
    assert weights_available(get_backbone("xception"), 299, weights_dir=tmp_path)
