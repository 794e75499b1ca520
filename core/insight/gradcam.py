"""Grad-CAM: where in the image the model looked when it chose a class.

Works on any model from ``core.models.classifier.build_classifier`` through its layer names: the ``preprocess_*`` layers run
first, then the ``backbone`` under a gradient tape that watches its final feature map, then ``pool`` and ``head``.
The class score is the pre-softmax logit (gradients of a saturated softmax vanish), and the map is the ReLU of the
feature channels weighted by their mean gradient (Selvaraju et al., 2017), upsampled to the input size.
"""

from __future__ import annotations

import functools
import weakref

import numpy as np
from PIL import Image

from core.errors import ConfigError
from core.models.classifier import head_of, preprocess_layers_of

_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _check_model(model) -> int:
    names = {layer.name for layer in model.layers}
    if not {"backbone", "pool", "head"} <= names:
        raise ConfigError(f"Grad-CAM needs a model built by Transfer Studio (layers 'backbone', 'pool', 'head'); "
                          f"model {model.name!r} has {', '.join(sorted(names))}.")
    if len(model.get_layer("backbone").output.shape) != 4:
        raise ConfigError(f"Model {model.name!r} was cut where its base has no feature map (its backbone gives "
                          "vectors), so Grad-CAM has nothing to show; cut the base model at a layer above a "
                          "convolution to see where it looks.")
    return int(model.input_shape[1])


def _head_logits(head, embedding):
    """Runs the head up to its last dense layer's pre-activation (logits) and returns (logits, probabilities)."""
    import tensorflow as tf

    hidden = embedding
    for layer in head.layers:
        if layer.name == "predictions":
            # A model trained under mixed_float16 (a GPU) hands float16 features to a float32 kernel.
            kernel = tf.convert_to_tensor(layer.kernel)
            logits = tf.matmul(tf.cast(hidden, kernel.dtype), kernel)
            if layer.bias is not None:  # a Teachable Machine head has no bias on its last layer
                logits = logits + tf.cast(layer.bias, kernel.dtype)
            return logits, tf.nn.softmax(logits, axis=-1)
        if layer.__class__.__name__ != "InputLayer":
            hidden = layer(hidden, training=False)
    raise ConfigError("The model's head has no 'predictions' layer; Grad-CAM cannot find the class scores.")


def _gradcam_graph(model_ref, images, class_index):
    """Heatmap at feature-map resolution, probabilities and the explained class, for a batch of one image."""
    import tensorflow as tf

    model = model_ref()
    x = images
    for layer in preprocess_layers_of(model):
        x = layer(x)
    with tf.GradientTape() as tape:
        features = model.get_layer("backbone")(x, training=False)
        tape.watch(features)
        logits, probabilities = _head_logits(head_of(model), model.get_layer("pool")(features))
        predicted = tf.argmax(probabilities[0], output_type=tf.int32)
        index = tf.where(class_index < 0, predicted, class_index)
        score = tf.gather(logits[0], index)
    gradients = tf.cast(tape.gradient(score, features), tf.float32)
    channel_weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(tf.cast(features, tf.float32) * channel_weights, axis=-1))[0]
    return cam, tf.cast(probabilities[0], tf.float32), index


def _gradcam_function(model):
    # The first heatmap of a model runs eagerly (tracing a deep network costs more than one eager pass); from the
    # second on, one traced function per model: eagerly, Keras re-traces its grouped convolutions (ConvNeXt) on
    # every call, seconds per heatmap. Weak references let the model and its function be garbage-collected.
    import tensorflow as tf

    function = _FUNCTIONS.get(model)
    if function is None:
        _FUNCTIONS[model] = functools.partial(_gradcam_graph, weakref.ref(model))
        return _FUNCTIONS[model]
    if isinstance(function, functools.partial):
        function = tf.function(function, reduce_retracing=True)
        _FUNCTIONS[model] = function
    return function


def compute_gradcam(model, image: np.ndarray, class_index: int | None = None):
    """Computes a Grad-CAM heatmap for one image.

    Args:
        model: A model from ``build_classifier`` (or reloaded from its ``.keras`` file).
        image: ``(S, S, 3)`` RGB array with raw values 0..255, at the model's input size.
        class_index: Class to explain; None explains the predicted class.

    Returns:
        ``(heatmap, class_index, probabilities)``: ``heatmap`` is float32 ``(S, S)`` in [0, 1], computed at the
        backbone's final feature-map resolution and upsampled bilinearly (all zeros when nothing in the image
        speaks for the class); ``probabilities`` is float32 ``(num_classes,)``.

    Raises:
        ConfigError: the model lacks the expected layers, or the image or class index does not fit it.
    """
    import tensorflow as tf

    size = _check_model(model)
    pixels = np.asarray(image, dtype="float32")
    if pixels.shape != (size, size, 3):
        raise ConfigError(f"Image of shape {pixels.shape}; this model needs ({size}, {size}, 3). Prepare it with "
                          f"core.data.images.prepare_image(image, {size}).")
    num_classes = int(head_of(model).output_shape[-1])
    if class_index is not None and not 0 <= class_index < num_classes:
        raise ConfigError(f"class_index={class_index}; this model has classes 0 to {num_classes - 1}.")
    wanted = tf.constant(-1 if class_index is None else int(class_index), dtype=tf.int32)
    cam, probabilities, index = _gradcam_function(model)(tf.constant(pixels[None]), wanted)
    peak = float(tf.reduce_max(cam))
    cam = cam / peak if peak > 0 else tf.zeros_like(cam)
    heatmap = tf.image.resize(cam[..., None], (size, size), method="bilinear")[..., 0]
    heatmap = np.clip(heatmap.numpy(), 0.0, 1.0).astype("float32")
    return heatmap, int(index), probabilities.numpy().astype("float32")


def jet_colors(values: np.ndarray) -> np.ndarray:
    """A jet-like colour map without matplotlib: values in [0, 1] -> uint8 RGB (blue, cyan, yellow, red)."""
    v = np.clip(np.asarray(values, dtype="float32"), 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0], dtype="float32")  # red peaks at 1, green at 0.5, blue at 0
    rgb = np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype("uint8")


def overlay_heatmap(image, heatmap: np.ndarray, alpha: float = 0.4) -> Image.Image:
    """Blends a coloured heatmap over an image.

    Args:
        image: PIL image or RGB array (values 0..255) of any size; the heatmap is resized to it.
        heatmap: ``(h, w)`` values in [0, 1], e.g. from ``compute_gradcam``.
        alpha: Weight of the heatmap colours (0: image only, 1: heatmap only).

    Returns:
        An RGB PIL image of the image's size.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha={alpha}; use a value from 0 (image only) to 1 (heatmap only).")
    base = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(
        np.clip(np.asarray(image, dtype="float32"), 0, 255).astype("uint8"), mode="RGB")
    heat = Image.fromarray((np.clip(heatmap, 0.0, 1.0) * 255.0).astype("uint8"), mode="L")
    heat = np.asarray(heat.resize(base.size, Image.BILINEAR), dtype="float32") / 255.0
    blended = (1.0 - alpha) * np.asarray(base, dtype="float32") + alpha * jet_colors(heat).astype("float32")
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype("uint8"), mode="RGB")
