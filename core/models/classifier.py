"""Self-contained classifiers: raw RGB pixels (0 to 255) in, class probabilities out.

Layout of every model (other modules rely on these names):

``image`` input -> ``preprocess_*`` layers (built-in Keras layers only, so the saved ``.keras`` file reloads with
``safe_mode=True`` in a process that imports nothing but Keras) -> ``backbone`` (a ``keras.applications`` model without
its top) -> ``pool`` (global average pooling: the embedding) -> ``head`` (a sub-model: dropout, optional hidden dense
layer, dense softmax layer ``predictions``).
"""

from __future__ import annotations

import numpy as np

from core.errors import ConfigError, WeightsError
from core.models.backbones import BACKBONES, BackboneSpec
from core.models.weights import ResolvedWeights

PREPROCESS_PREFIX = "preprocess_"
MODEL_NAME_SUFFIX = "_classifier"
# ImageNet statistics, as keras.applications.imagenet_utils uses them.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
TRAINABLE_MODES = ("frozen", "top", "all")


def preprocessing_layers(kind: str) -> list:
    """Built-in Keras layers that turn raw 0..255 RGB pixels into what a backbone of ``kind`` expects.

    Args:
        kind: ``tf``, ``caffe``, ``torch`` or ``builtin`` (see ``BackboneSpec.preprocessing``).

    Returns:
        New, unbuilt layers named ``preprocess_*``; empty for ``builtin``.
    """
    import keras

    if kind == "tf":
        return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess_scale")]
    if kind == "caffe":
        # RGB -> BGR and mean subtraction in one frozen 1x1 convolution: a built-in layer (a Lambda would not
        # reload in safe mode, a custom layer would need project code at load time).
        kernel = np.zeros((1, 1, 3, 3), dtype="float32")
        for out_channel in range(3):
            kernel[0, 0, 2 - out_channel, out_channel] = 1.0
        bias = -np.asarray(CAFFE_BGR_MEAN, dtype="float32")
        conv = keras.layers.Conv2D(3, 1, name="preprocess_caffe_bgr_mean", trainable=False,
                                   kernel_initializer=keras.initializers.Constant(kernel),
                                   bias_initializer=keras.initializers.Constant(bias))
        return [conv]
    if kind == "torch":
        return [keras.layers.Rescaling(1.0 / 255.0, name="preprocess_scale"),
                keras.layers.Normalization(mean=list(TORCH_MEAN), variance=[s * s for s in TORCH_STD],
                                           name="preprocess_normalize")]
    if kind == "builtin":
        return []
    raise ConfigError(f"Unknown preprocessing {kind!r}; expected one of tf, caffe, torch, builtin.")


def _check_build_arguments(spec: BackboneSpec, image_size: int, num_classes: int, dropout: float,
                           hidden_units: int) -> None:
    if not isinstance(image_size, int) or image_size < spec.min_size:
        raise ConfigError(f"image_size={image_size!r} is too small for {spec.display_name}; it needs at least "
                          f"{spec.min_size} px (offered sizes: {', '.join(map(str, spec.allowed_sizes))}).")
    if num_classes < 2:
        raise ConfigError(f"num_classes={num_classes}; a classifier needs at least 2 classes.")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout={dropout}; use a fraction from 0 (none) to below 1, e.g. 0.2.")
    if hidden_units < 0:
        raise ConfigError(f"hidden_units={hidden_units}; use 0 (no hidden layer) or a positive number.")


def _build_backbone(spec: BackboneSpec, image_size: int, weights: ResolvedWeights):
    import keras

    constructor = getattr(keras.applications, spec.constructor)
    try:
        backbone = constructor(include_top=False, weights=weights.keras_weights,
                               input_shape=(image_size, image_size, 3), **spec.constructor_kwargs)
    except Exception as exc:  # Keras raises bare Exceptions for downloads and OSError/ValueError for bad files
        if weights.keras_weights is None:
            raise
        raise WeightsError(f"{spec.display_name} could not load its weights ({weights.description}): "
                           f"{type(exc).__name__}: {exc}. Check the weight file, or train from scratch.") from exc
    backbone.name = "backbone"
    return backbone


def build_head(num_features: int, num_classes: int, *, dropout: float = 0.2, hidden_units: int = 0, seed: int = 0):
    """The ``head`` sub-model: embedding -> dropout -> optional ``head_hidden`` ReLU layer -> ``predictions``."""
    import keras

    inputs = keras.Input((num_features,), name="embedding")
    x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout")(inputs)
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation="relu", name="head_hidden",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    # float32 even under a mixed-precision policy (GPU): a float16 softmax loses small probabilities.
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1))(x)
    return keras.Model(inputs, outputs, name="head")


def build_classifier(spec: BackboneSpec, *, image_size: int, num_classes: int, weights: ResolvedWeights,
                     dropout: float = 0.2, hidden_units: int = 0, seed: int = 0):
    """Builds the full model: raw pixels -> preprocessing -> backbone -> pool -> head.

    The backbone starts frozen and is called with ``training=False`` (the Keras fine-tuning recipe). In Keras 3
    ``fit`` overrides that recorded flag with ``training=True`` (keras-team/keras#20285), so what really keeps
    BatchNormalization in inference mode is that it stays frozen: a frozen BatchNormalization layer always uses its
    moving statistics, and ``set_backbone_trainable`` keeps every one frozen in ``top`` mode. In ``all`` mode (from
    scratch) they train and use batch statistics, as they must.

    Args:
        spec: The backbone.
        image_size: Square input size in pixels (at least ``spec.min_size``).
        num_classes: Number of output classes (2 or more).
        weights: From ``core.models.weights.resolve_weights``.
        dropout: Dropout rate before the dense layer(s).
        hidden_units: Size of an optional hidden ReLU layer in the head; 0 for none.
        seed: Seed of the head's initialisers and dropout (and of Keras' global RNG for random-init backbones).

    Returns:
        An uncompiled ``keras.Model`` named ``<backbone>_classifier``.

    Raises:
        ConfigError: an argument out of range.
        WeightsError: Keras could not load the resolved weights.
    """
    import keras

    _check_build_arguments(spec, image_size, num_classes, dropout, hidden_units)
    if weights.keras_weights is None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 3), dtype="float32", name="image")
    x = inputs
    for layer in preprocessing_layers(spec.preprocessing):
        x = layer(x)
    backbone = _build_backbone(spec, image_size, weights)
    backbone.trainable = False
    x = backbone(x, training=False)
    embedding = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    head = build_head(int(embedding.shape[-1]), num_classes, dropout=dropout, hidden_units=hidden_units, seed=seed)
    outputs = head(embedding)
    return keras.Model(inputs, outputs, name=spec.name + MODEL_NAME_SUFFIX)


def spec_of(model) -> BackboneSpec | None:
    """The registry entry a model was built from (read from its name), or None for a foreign model."""
    name = model.name[: -len(MODEL_NAME_SUFFIX)] if model.name.endswith(MODEL_NAME_SUFFIX) else ""
    return BACKBONES.get(name)


def preprocess_layers_of(model) -> list:
    """The model's ``preprocess_*`` layers, in order."""
    return [layer for layer in model.layers if layer.name.startswith(PREPROCESS_PREFIX)]


def feature_extractor(model):
    """A model from the same input to the ``pool`` output (the embedding), sharing weights with ``model``."""
    import keras

    return keras.Model(model.inputs, embedding_tensor(model), name="feature_extractor")


def replace_head(model, head):
    """The same model (input, preprocessing, backbone, pool; weights shared) with ``head`` on top instead."""
    import keras

    return keras.Model(model.inputs, head(embedding_tensor(model)), name=model.name)


def embedding_tensor(model):
    """``pool``'s output in ``model``'s own graph.

    A ``pool`` that is a model of its own (a base cut above its feature map) answers ``.output`` with its inner
    graph's tensor, so the embedding is traced again through the same layers then.
    """
    pool = model.get_layer("pool")
    if not hasattr(pool, "layers"):
        return pool.output
    x = model.inputs[0]
    for layer in preprocess_layers_of(model):
        x = layer(x)
    return pool(model.get_layer("backbone")(x, training=False))


def head_of(model):
    """The ``head`` sub-model (embedding -> probabilities); training it trains ``model``'s head too."""
    return model.get_layer("head")


def count_params(weights) -> int:
    """Number of values in a list of Keras weights (``layer.trainable_weights`` and the like)."""
    return int(sum(np.prod(weight.shape) for weight in weights))


def trainable_counts(model) -> dict:
    """Trainable and frozen parameter counts as Keras sees them, and how many backbone layers train."""
    backbone = model.get_layer("backbone")
    return {
        "trainable_params": count_params(model.trainable_weights),
        "frozen_params": count_params(model.non_trainable_weights),
        "trainable_layers": sum(1 for layer in backbone.layers if layer.trainable_weights),
    }


def set_backbone_trainable(model, mode: str, top_layers: int = 0) -> dict:
    """Freezes or unfreezes the backbone; recompile the model afterwards for it to take effect in ``fit``.

    Args:
        model: A model from ``build_classifier``.
        mode: ``frozen`` (only the head trains), ``top`` (also the top ``top_layers`` backbone layers, every
            BatchNormalization layer kept frozen) or ``all`` (everything but the fixed preprocessing; from scratch).
        top_layers: For ``top``: how many backbone layers, counted from the output, to unfreeze; 0 means the
            backbone's default block boundary (``BackboneSpec.default_fine_tune_layers``).

    Returns:
        ``{"trainable_params", "frozen_params", "trainable_layers"}`` from Keras' own weight lists
        (``trainable_layers``: backbone layers that now have trainable weights), plus ``top_layers`` used.

    Raises:
        ConfigError: unknown mode, negative ``top_layers``, or ``top`` with 0 on a model not built here.
    """
    import keras

    if mode not in TRAINABLE_MODES:
        raise ConfigError(f"Unknown trainable mode {mode!r}; use one of {', '.join(TRAINABLE_MODES)}.")
    if top_layers < 0:
        raise ConfigError(f"top_layers={top_layers}; use 0 (default block) or a positive number of layers.")
    backbone = model.get_layer("backbone")
    if mode == "top" and top_layers == 0:
        spec = spec_of(model)
        if spec is None:
            raise ConfigError("top_layers=0 needs a model built by build_classifier; pass a number of layers.")
        top_layers = spec.default_fine_tune_layers()
    used = {"frozen": 0, "top": min(top_layers, len(backbone.layers)), "all": len(backbone.layers)}[mode]
    first = len(backbone.layers) - used
    # Set every flag explicitly: a flag set by an earlier mode must not leak into this one.
    model.trainable = True
    backbone.trainable = mode != "frozen"
    for index, layer in enumerate(backbone.layers):
        # In "top" mode BatchNormalization stays frozen: unfrozen, it would drift on a small dataset and wreck the
        # pretrained features. From scratch ("all") it must learn like every other layer.
        keep_bn_frozen = mode == "top" and isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= first and not keep_bn_frozen
    # A base from a model file may nest whole models in its backbone, and a pool with weights of its own above
    # the feature map: that pool trains with the top of the backbone, and no BatchNormalization at any depth does.
    model.get_layer("pool").trainable = mode != "frozen"
    if mode == "top":
        _freeze_nested_batch_norm(backbone)
        _freeze_nested_batch_norm(model.get_layer("pool"))
    for layer in head_of(model).layers:
        layer.trainable = True
    for layer in preprocess_layers_of(model):
        layer.trainable = False
    counts = trainable_counts(model)
    counts["top_layers"] = used
    return counts


def _freeze_nested_batch_norm(layer) -> None:
    import keras

    for inner in getattr(layer, "layers", []):
        if isinstance(inner, keras.layers.BatchNormalization):
            inner.trainable = False
        _freeze_nested_batch_norm(inner)


def get_spec_or_error(model) -> BackboneSpec:
    """Like ``spec_of`` but raises ConfigError for a model not built by ``build_classifier``."""
    spec = spec_of(model)
    if spec is None:
        raise ConfigError(f"Model {model.name!r} was not built by Transfer Studio (expected a name ending in "
                          f"{MODEL_NAME_SUFFIX!r}); known backbones: {', '.join(BACKBONES)}.")
    return spec
