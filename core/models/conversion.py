"""A Keras model converted for other runtimes: a SavedModel serving raw pixels, and TFLite bytes from it.

Used by the exports (``core.delivery.export``) and by the machine-wide LiteRT extractors (``core.models.litert``).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from core.errors import ExportError


def convert_to_tflite(model, *, quantize: str | None = None) -> bytes:
    """TFLite flatbuffer bytes of a Keras model (through a SavedModel, which converts quietly)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="ts-tflite-") as folder:
        saved = Path(folder) / "saved_model"
        export_saved_model(model, saved)
        try:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            if quantize == "dynamic":
                # No representative dataset: weights become int8, activations stay float.
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            return bytes(converter.convert())
        except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
            raise ExportError(
                f"TFLite conversion failed: {' '.join(str(exc).split())[:400]}. Export a bundle or a "
                "SavedModel instead, and report the backbone that failed."
            ) from exc


def export_saved_model(model, path: Path) -> None:
    """A SavedModel whose ``serve`` takes one batch of raw pixels, also for a model whose inputs are a one-item
    list (``keras.Model(model.inputs, ...)``, as a head swap builds): ``model.export`` would serve a list then."""
    import keras
    import tensorflow as tf

    shape = (None, *model.inputs[0].shape[1:])
    try:
        # verbose=False: the export otherwise prints its signature to stdout (breaks --json).
        with contextlib.redirect_stdout(io.StringIO()):
            archive = keras.export.ExportArchive()
            archive.track(model)
            archive.add_endpoint(name="serve", fn=lambda image: model(image, training=False),
                                 input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])
            archive.write_out(str(path), verbose=False)
    except Exception as exc:  # TensorFlow raises many types while tracing
        raise ExportError(f"SavedModel export failed: {' '.join(str(exc).split())[:400]}.") from exc
