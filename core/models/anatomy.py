"""Model anatomy: the backbone's layers in blocks, what trains and what is frozen, in words a student understands.

Blocks come from the layer names Keras gives each architecture (``block_3_expand`` belongs to ``block_3``,
``conv4_block2_1_conv`` to ``conv4_block2``). Layers without a block name (activations, additions, InceptionV3's
numbered convolutions) join the block they sit in; InceptionV3's blocks end at their ``mixedN`` layer.
"""

from __future__ import annotations

import re

from core.errors import ConfigError
from core.models.classifier import count_params, head_of, preprocess_layers_of, spec_of

# (pattern, closes): the first group names the block; a "closing" name ends a block that unnamed layers led up to.
_BLOCK_PATTERNS = (
    (re.compile(r"^(block_\d+)_"), False),                      # MobileNetV2
    (re.compile(r"^(expanded_conv(?:_\d+)?)_"), False),         # MobileNetV2 block 0, MobileNetV3
    (re.compile(r"^(block\d+[a-z]?)_"), False),                 # EfficientNet, Xception, VGG16
    (re.compile(r"^(conv\d+_block\d+)_"), False),               # ResNet, DenseNet
    (re.compile(r"^((?:conv|pool)\d+)_"), False),               # ResNet / DenseNet stem and transitions
    (re.compile(r"^convnext_\w+?_(stage_\d+_block_\d+)_"), False),
    (re.compile(r"^convnext_\w+?_(downsampling_block_\d+)"), False),
    (re.compile(r"^convnext_\w+?_(stem|prestem)"), False),
    (re.compile(r"^(stem)_"), False),
    (re.compile(r"^(top)_"), False),
    (re.compile(r"^(mixed\d+)$"), True),                       # InceptionV3 (mixed9_0 etc. are inner)
)

PREPROCESSING_WORDS = {
    "tf": "Pixel values 0 to 255 are rescaled to -1 to 1 (divide by 127.5, subtract 1), as this network was "
          "trained.",
    "caffe": "Colour channels are reordered from RGB to BGR and the average ImageNet colour (103.9, 116.8, "
             "123.7) is subtracted from each pixel, as this network was trained (done by a fixed 1x1 "
             "convolution that never trains).",
    "torch": "Pixel values are divided by 255, then each colour channel is shifted by the average ImageNet "
             "colour and divided by its spread (mean 0.485/0.456/0.406, standard deviation 0.229/0.224/0.225).",
    "builtin": "The network rescales the raw 0 to 255 pixel values itself, with its own first layers.",
}


def _classify(name: str) -> tuple[str | None, bool]:
    for pattern, closes in _BLOCK_PATTERNS:
        match = pattern.match(name)
        if match:
            return match.group(1), closes
    return None, False


def group_layers(layers) -> list[tuple[str, list]]:
    """Groups backbone layers into ``(block name, layers)`` in network order (input layers left out)."""
    groups: dict[str, list] = {}
    current, pending = None, []

    def add(block: str, items: list) -> None:
        groups.setdefault(block, []).extend(items)

    for layer in layers:
        if layer.__class__.__name__ == "InputLayer":
            continue
        block, closes = _classify(layer.name)
        if block is None:
            pending.append(layer)
        elif closes:
            add(block, [*pending, layer])
            pending, current = [], block
        else:
            if pending:
                add(current or "stem", pending)
            pending, current = [], block
            add(block, [layer])
    if pending:
        add("top", pending)
    return list(groups.items())


def _summary(name: str, layers: list) -> dict:
    trainable = sum(count_params(layer.trainable_weights) for layer in layers)
    frozen = sum(count_params(layer.non_trainable_weights) for layer in layers)
    return {"name": name, "layers": len(layers), "params": trainable + frozen, "trainable_params": trainable,
            "frozen_params": frozen, "layer_names": [layer.name for layer in layers]}


def describe_model(model) -> dict:
    """Describes a classifier from ``build_classifier`` for the anatomy view.

    Args:
        model: The model, in whatever trainable state ``set_backbone_trainable`` left it.

    Returns:
        A JSON-able dict: ``backbone`` (registry name), ``display_name``, ``input_size``, ``preprocessing`` (kind)
        and ``preprocessing_words``; ``blocks`` (backbone blocks in order, each with ``name``, ``layers``,
        ``params``, ``trainable_params``, ``frozen_params``, ``layer_names``); ``preprocessing_block``,
        ``backbone_block`` and ``head_block`` summaries; and ``totals`` (``params``, ``trainable_params``,
        ``frozen_params``), which equal Keras' own counts for the whole model.

    Raises:
        ConfigError: the model was not built by ``build_classifier``.
    """
    spec = spec_of(model)
    names = {layer.name for layer in model.layers}
    if spec is None or not {"backbone", "pool", "head"} <= names:
        raise ConfigError(f"Model {model.name!r} was not built by Transfer Studio; its anatomy cannot be shown.")
    backbone = model.get_layer("backbone")
    blocks = [_summary(name, layers) for name, layers in group_layers(backbone.layers)]
    trainable, frozen = count_params(model.trainable_weights), count_params(model.non_trainable_weights)
    return {
        "backbone": spec.name,
        "display_name": spec.display_name,
        "input_size": int(model.input_shape[1]),
        "preprocessing": spec.preprocessing,
        "preprocessing_words": PREPROCESSING_WORDS[spec.preprocessing],
        "blocks": blocks,
        "preprocessing_block": _summary("preprocessing", preprocess_layers_of(model)),
        "backbone_block": _summary("backbone", backbone.layers),
        "head_block": _summary("head", head_of(model).layers),
        "totals": {"params": trainable + frozen, "trainable_params": trainable, "frozen_params": frozen},
    }
