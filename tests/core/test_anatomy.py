"""Model anatomy: blocks, and trainable versus frozen counts that agree with Keras in every phase."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.models.anatomy import describe_model, group_layers
from core.models.backbones import get_backbone
from core.models.classifier import build_classifier, set_backbone_trainable
from core.models.weights import NO_WEIGHTS


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    import keras

    yield
    keras.backend.clear_session()


def _keras_counts(model) -> tuple[int, int]:
    from keras.src.utils.summary_utils import count_params

    return count_params(model.trainable_weights), count_params(model.non_trainable_weights)


@pytest.mark.parametrize("name", ["mobilenet_v2", "vgg16"])
def test_trainable_counts_equal_keras_counts_in_each_phase(name):
    spec = get_backbone(name)
    model = build_classifier(spec, image_size=min(spec.allowed_sizes), num_classes=3, weights=NO_WEIGHTS)
    for mode in ("frozen", "top", "all", "frozen"):
        counts = set_backbone_trainable(model, mode)
        anatomy = describe_model(model)
        totals = anatomy["totals"]
        assert (totals["trainable_params"], totals["frozen_params"]) == _keras_counts(model)
        assert totals["trainable_params"] == counts["trainable_params"]
        parts = [anatomy["preprocessing_block"], anatomy["head_block"], *anatomy["blocks"]]
        assert sum(part["trainable_params"] for part in parts) == totals["trainable_params"]
        assert sum(part["frozen_params"] for part in parts) == totals["frozen_params"]
        trainable_blocks = [block["name"] for block in anatomy["blocks"] if block["trainable_params"]]
        if mode == "frozen":
            assert trainable_blocks == []
        if mode == "top":
            # The default boundary unfreezes only the last block(s) of the network.
            assert trainable_blocks == {"mobilenet_v2": ["block_16", "top"], "vgg16": ["block5"]}[name]


def test_description_names_input_size_and_preprocessing_in_words():
    model = build_classifier(get_backbone("mobilenet_v2"), image_size=96, num_classes=2, weights=NO_WEIGHTS)
    anatomy = describe_model(model)
    assert anatomy["input_size"] == 96 and anatomy["display_name"] == "MobileNetV2"
    assert "-1 to 1" in anatomy["preprocessing_words"]
    assert [block["name"] for block in anatomy["blocks"]][:3] == ["stem", "expanded_conv", "block_1"]


@pytest.mark.parametrize(("name", "first", "last", "count"), [
    ("inception_v3", "mixed0", "mixed10", 11),
    ("vgg16", "block1", "block5", 5),
    ("resnet50", "conv1", "conv5_block3", 18),
])
def test_blocks_cover_every_backbone_layer_once(name, first, last, count):
    import keras

    spec = get_backbone(name)
    size = min(spec.allowed_sizes)
    base = getattr(keras.applications, spec.constructor)(include_top=False, weights=None,
                                                          input_shape=(size, size, 3))
    groups = group_layers(base.layers)
    assert (groups[0][0], groups[-1][0], len(groups)) == (first, last, count)
    grouped = [layer.name for _, layers in groups for layer in layers]
    assert sorted(grouped) == sorted(layer.name for layer in base.layers[1:])


def test_a_foreign_model_is_refused():
    import keras

    inputs = keras.Input((8,))
    with pytest.raises(ConfigError, match="not built by Transfer Studio"):
        describe_model(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
