"""The backbone registry against what Keras caches and preprocesses (parameter counts and fine-tuning
boundaries are checked on the built models in test_models.py)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from core.models.backbones import BACKBONES, get_backbone

REQUIRED = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_v2_b0",
            "resnet50", "resnet50_v2", "inception_v3", "xception", "vgg16", "densenet121", "convnext_tiny")


class _Requested(Exception):
    """Raised by the fake get_file so that no download is attempted."""


def test_registry_holds_every_required_backbone_with_sane_fields():
    assert set(REQUIRED) <= set(BACKBONES)
    for spec in BACKBONES.values():
        assert spec.default_size in spec.allowed_sizes
        assert min(spec.allowed_sizes) >= spec.min_size
        assert spec.preprocessing in ("tf", "caffe", "torch", "builtin")
        assert 0.6 < spec.top1 < 0.9 and spec.size_mb > 0 and spec.guidance
    assert BACKBONES["mobilenet_v2"].top1 == 0.713


def test_get_backbone_unknown_name_lists_the_valid_names():
    with pytest.raises(ConfigError, match="mobilenet_v2.*convnext_tiny"):
        get_backbone("alexnet")


@pytest.mark.parametrize("name", REQUIRED)
def test_weights_file_is_the_one_keras_asks_for(name, monkeypatch):
    import keras
    from keras.src.utils import file_utils

    from core.models.weights import weights_origin

    requested = []

    def fake_get_file(fname=None, origin=None, file_hash=None, **kwargs):
        requested.append((fname, origin, file_hash))
        raise _Requested

    monkeypatch.setattr(file_utils, "get_file", fake_get_file)
    spec = get_backbone(name)
    sizes = (96, 150, 224) if name == "mobilenet_v2" else (spec.default_size,)
    for size in sizes:
        with pytest.raises(_Requested):
            getattr(keras.applications, spec.constructor)(include_top=False, weights="imagenet",
                                                          input_shape=(size, size, 3), **spec.constructor_kwargs)
        keras.backend.clear_session()
        fname, origin, file_hash = requested[-1]
        assert fname == spec.weights_file(size)
        assert (origin, file_hash) == weights_origin(spec, size)


def test_mobilenet_v2_odd_sizes_use_the_224_file():
    spec = get_backbone("mobilenet_v2")
    assert spec.weights_file(160).endswith("_1.0_160_no_top.h5")
    assert spec.weights_file(150) == spec.weights_file(224)


@pytest.mark.parametrize("name", REQUIRED)
def test_preprocessing_layers_match_keras_preprocess_input(name):
    import keras

    from core.models.classifier import preprocessing_layers

    spec = get_backbone(name)
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    ours = images
    for layer in preprocessing_layers(spec.preprocessing):
        ours = keras.ops.convert_to_numpy(layer(ours))
    module = getattr(keras.applications, spec.keras_module)
    theirs = np.asarray(module.preprocess_input(images.copy()))
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
