"""LiteRT stand-ins for a trained classifier, used by ``core.models.prediction.Predictor`` when one is at hand.

Three ways, cheapest first: a ``model.tflite`` converted from this very ``model.keras`` (a bundle carries
one; a run gets one when exported); for a feature-extraction run, the machine's converted frozen
extractor (``core.models.extractors``) followed by the run's own head in NumPy, which needs no conversion of the
run at all; else none, and Keras runs the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.models.litert import ConvertedStore, LiteRTModel, extractor_key, litert_available

TFLITE_NAME = "model.tflite"


class HeadFunction:
    """The Keras ``head`` sub-model (embedding -> probabilities) as NumPy: Dense layers, Dropout skipped."""

    _ACTIVATIONS = {
        "linear": lambda x: x,
        "relu": lambda x: np.maximum(x, 0.0),
        "softmax": lambda x: _softmax(x),
    }

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, str]]):
        self.layers = layers

    @classmethod
    def from_keras(cls, head) -> HeadFunction | None:
        """None when the head holds anything but Input, Dropout and Dense layers with a known activation."""
        import keras

        layers = []
        for layer in head.layers:
            if isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout)):
                continue
            activation = getattr(getattr(layer, "activation", None), "__name__", None)
            if not isinstance(layer, keras.layers.Dense) or activation not in cls._ACTIVATIONS:
                return None
            kernel, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
            layers.append((kernel, bias, activation))
        return cls(layers) if layers else None

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.asarray(embeddings, dtype=np.float32)
        for kernel, bias, activation in self.layers:
            x = self._ACTIVATIONS[activation](x @ kernel + bias)
        return x


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class ComposedModel:
    """The machine's LiteRT extractor, then the run's head: raw pixels in, probabilities out."""

    runtime = "litert"

    def __init__(self, extractor: LiteRTModel, head: HeadFunction):
        self.extractor, self.head, self.threads = extractor, head, extractor.threads

    def predict_on_batch(self, images) -> np.ndarray:
        return self.head(self.extractor.predict_on_batch(images))

    __call__ = predict_on_batch

    description = "LiteRT (XNNPACK): the machine's converted extractor + this run's head"


def _fresh_tflite(keras_path: Path) -> Path | None:
    tflite = Path(keras_path).with_name(TFLITE_NAME)
    try:
        return tflite if tflite.stat().st_mtime >= Path(keras_path).stat().st_mtime else None
    except OSError:
        return None


def whole_model(content: bytes | None):
    """A LiteRTModel of a converted classifier, or None when there is none or LiteRT cannot run it."""
    if not content or not litert_available():
        return None
    try:
        model = LiteRTModel(content)
    except Exception:  # a broken file or a delegate that refuses it: Keras runs the model instead
        return None
    model.description = "LiteRT (XNNPACK): model.tflite"
    return model


def fast_model_for_file(keras_path) -> object | None:
    """LiteRT for a ``model.keras`` with a ``model.tflite`` beside it that is at least as new."""
    tflite = _fresh_tflite(Path(keras_path))
    return whole_model(tflite.read_bytes()) if tflite else None


def fast_model_for_run(run: dict, keras_model, keras_path) -> object | None:
    """The cheapest LiteRT stand-in for a run's model, or None (Keras then runs it)."""
    found = fast_model_for_file(keras_path)
    if found is not None or not litert_available():
        return found
    config = run.get("config") or {}
    fingerprint = run.get("weights_fingerprint") or ""
    if config.get("strategy") != "feature-extraction" or not fingerprint.startswith("imagenet-"):
        return None  # the backbone was trained (or random): only a conversion of this model will do
    key = extractor_key(config.get("backbone", ""), int(run.get("image_size") or 0), fingerprint)
    content = ConvertedStore().load(key)
    head = HeadFunction.from_keras(keras_model.get_layer("head")) if content else None
    if head is None:
        return None
    try:
        return ComposedModel(LiteRTModel(content), head)
    except Exception:  # the delegate refuses the file: Keras runs the model
        return None
