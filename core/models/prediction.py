"""Inference with a trained model: one self-contained class used by the CLI and the app.

``Predictor`` holds a Keras model (raw RGB pixels 0..255 in, probabilities out), its class
names and how images reach its input size. Images go through ``core.data.images`` exactly as in
training, so a prediction here is the prediction the run was evaluated with.
"""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from core.errors import ConfigError, ExportError, StudioError
from core.models.readers import BundleFiles, load_keras_bytes, read_bytes, read_json_file

UNKNOWN_LABEL = "unknown"


class Predictor:
    """A loaded model ready to classify images.

    Create it with ``from_run``, ``from_bundle``, ``from_keras_file`` or ``load`` (any of them).

    Attributes:
        model: the Keras model (raw pixels in, probabilities out).
        classes: class names in the model's output order.
        image_size: side of the square model input, in pixels.
        resize: how images reach ``image_size``: "squash", "crop" or "pad".
        source: where the model came from (run id or file), for display.
        config: the run config saved with the model ({} when unknown).
        warnings: things the user should know about this model (e.g. class names made up), for display.
        runtime: ``litert`` when a LiteRT stand-in (``core.models.fast_models``) answers, else ``keras``.
        runtime_description: which runtime answers, for people.
    """

    def __init__(self, model, classes, *, resize: str = "squash", source: str = "", config: dict | None = None,
                 fast=None):
        self.model = model
        self.fast = fast
        self.runtime = "litert" if fast is not None else "keras"
        self.runtime_description = getattr(fast, "description", "LiteRT") if fast is not None else \
            "Keras (TensorFlow)"
        self.classes = tuple(str(c) for c in classes)
        self.image_size = _input_size(model, source)
        self.resize = resize or "squash"
        self.source = source
        self.config = dict(config or {})
        # Runs trained here record the cap of their stored copies; a model trained elsewhere (imported) saw
        # originals, so it gets none.
        self.max_side = self.config.get("max_side")
        self.warnings: list[str] = []
        outputs = int(model.output_shape[-1])
        if outputs != len(self.classes):
            raise ExportError(
                f"The model in {source or 'the given file'} has {outputs} outputs but {len(self.classes)} "
                "class names were given; expected one name per output. Use the labels.json saved with it."
            )
        self._forward = None

    @classmethod
    def from_run(cls, workspace, run_id: str) -> Predictor:
        """The model of a finished run in ``workspace`` (RunError when it has none)."""
        from core.models.fast_models import fast_model_for_run
        from core.runs import load_run, load_run_model, model_path

        run = load_run(workspace, run_id)
        model = load_run_model(workspace, run_id)
        config = run.get("config") or {}
        return cls(model, run.get("classes") or [], resize=config.get("resize", "squash"),
                   source=run_id, config={**config, "max_side": run.get("max_side")},
                   fast=fast_model_for_run(run, model, model_path(workspace, run_id)))

    @classmethod
    def from_bundle(cls, path) -> Predictor:
        """A bundle exported by ``core.delivery.export.export_bundle``: its zip file or unpacked folder."""
        path = Path(path)
        if path.is_dir():
            files = BundleFiles.from_folder(path)
        elif zipfile.is_zipfile(path):
            files = BundleFiles.from_zip(path)
        else:
            raise ExportError(
                f"'{path.name}' is not a model bundle; expected a .zip exported from the Runs page (or "
                "`python -m core export RUN --format bundle`) or its unpacked folder."
            )
        from core.models.fast_models import whole_model

        model = load_keras_bytes(files.model_bytes, path.name)
        config = files.config or {}
        return cls(model, files.labels, resize=config.get("resize", "squash"), source=str(path), config=config,
                   fast=whole_model(files.tflite_bytes))

    @classmethod
    def from_keras_file(cls, path, classes=None, *, use_litert: bool = True) -> Predictor:
        """A bare ``.keras`` file; class names from ``classes``, a labels.json beside it, or class_<i>.

        A ``model.tflite`` beside it, at least as new, answers instead of Keras unless ``use_litert`` is False.
        """
        path = Path(path)
        model = load_keras_bytes(read_bytes(path), str(path))
        config = read_json_file(path.parent / "config.json") or {}
        classes = classes or read_json_file(path.parent / "labels.json")
        guessed = classes is None
        if guessed:
            classes = [f"class_{i}" for i in range(int(model.output_shape[-1]))]
        from core.models.fast_models import fast_model_for_file

        predictor = cls(model, classes, resize=config.get("resize", "squash"), source=str(path), config=config,
                        fast=fast_model_for_file(path) if use_litert else None)
        if guessed:
            predictor.warnings.append(
                f"No labels.json beside {path}: classes are named class_0 to class_{len(classes) - 1}. Put the "
                "labels.json saved with the model next to it to get the real class names.")
        return predictor

    @classmethod
    def load(cls, model_or_run: str, workspace=None) -> Predictor:
        """A run id, a bundle (zip or folder) or a ``.keras`` file, whichever ``model_or_run`` names."""
        path = Path(model_or_run)
        if path.suffix == ".keras" and path.is_file():
            return cls.from_keras_file(path)
        if path.exists() and (path.is_dir() or path.suffix == ".zip"):
            return cls.from_bundle(path)
        if workspace is None or os.sep in model_or_run or path.suffix in (".zip", ".keras"):
            raise ConfigError(
                f"{model_or_run!r} is neither an existing bundle (.zip or folder), a .keras file nor a run id. "
                "Check the path, or see `python -m core runs` for run ids."
            )
        return cls.from_run(workspace, model_or_run)

    def prepare(self, image, *, stored: bool = False) -> np.ndarray:
        """One image (path, bytes, file object or PIL image) -> float32 (S, S, 3) array, 0..255.

        An image from outside a dataset first becomes what ingestion would have stored (longest side capped,
        JPEG re-encoded), so the model sees the pixels it was trained on; ``stored=True`` marks a dataset's
        stored copy, which is used as it is.
        """
        from PIL import Image

        from core.data.images import as_stored, load_rgb_image, prepare_image

        # A PIL image (camera frame, already decoded) skips decoding; prepare_image converts its mode.
        rgb = image if isinstance(image, Image.Image) else load_rgb_image(image)
        if not stored and self.max_side:
            rgb = as_stored(rgb, int(self.max_side))
        return prepare_image(rgb, self.image_size, self.resize)

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) for prepared images (N, S, S, 3)."""
        if self.fast is not None:
            return np.asarray(self.fast.predict_on_batch(np.asarray(batch, dtype=np.float32)), dtype=np.float32)
        # A traced function skips model.predict's per-call set-up (a data adapter, callbacks),
        # which costs far more than the forward pass itself for a single image.
        if self._forward is None:
            import tensorflow as tf

            spec = tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.float32)
            self._forward = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])
        return np.asarray(self._forward(np.asarray(batch, dtype=np.float32)), dtype=np.float32)

    def warm_up(self) -> Predictor:
        """Trace the forward pass now (a few seconds for a large backbone) so the first answer is quick."""
        self.predict_arrays(np.zeros((1, self.image_size, self.image_size, 3), dtype=np.float32))
        return self

    def predict_probabilities(self, images, batch_size: int = 32, *, stored: bool = False) -> np.ndarray:
        """Probabilities (N, C) for a list of images, prepared and run ``batch_size`` at a time.

        ``stored=True``: the images are a dataset's stored copies (see ``prepare``).
        """
        chunks = [probs for _, probs in self._iter_batches(list(images), batch_size, on_error="raise",
                                                           stored=stored)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes)), dtype=np.float32)

    def predict_images(self, images, top_k: int = 3, unknown_threshold: float | None = None,
                       batch_size: int = 32, on_error: str = "raise") -> list[dict]:
        """Classify images.

        Args:
            images: paths, bytes, file objects (e.g. uploads, named by ``.name``), PIL images,
                or ``(name, image)`` pairs.
            top_k: how many of the most probable classes to list per image.
            unknown_threshold: answer "unknown" when the top probability is below it (None: never).
            batch_size: images per forward pass.
            on_error: "raise" (DatasetError naming the file) or "record" (a result with ``error``).

        Returns:
            One dict per image, in order: file, label (top class), probability, top_k
            [(label, probability)], unknown (bool), answer (label or "unknown"), error (None or text).
        """
        if unknown_threshold is not None and not 0.0 <= unknown_threshold <= 1.0:
            raise ConfigError(f"unknown_threshold must be between 0 and 1; got {unknown_threshold}.")
        if on_error not in ("raise", "record"):
            raise ConfigError(f"on_error must be 'raise' or 'record'; got {on_error!r}.")
        named = [_name_and_image(item, i) for i, item in enumerate(images)]
        results = []
        for batch, probs in self._iter_batches([image for _, image in named], batch_size, on_error):
            rows = iter(probs)
            for index, prepared in batch:
                name = named[index][0]
                if isinstance(prepared, str):
                    results.append(_error_result(name, prepared))
                else:
                    results.append(self._result(name, next(rows), top_k, unknown_threshold))
        return results

    def _iter_batches(self, images: list, batch_size: int, on_error: str, stored: bool = False):
        """Yields ([(index, array or error text)], probabilities of the arrays) per batch."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1; got {batch_size}.")

        def prepare(image):
            try:
                return self.prepare(image, stored=stored)
            except StudioError as exc:
                if on_error == "raise":
                    raise
                return str(exc)

        # Decoding and resizing release the GIL in Pillow, so a few threads keep the model fed.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for start in range(0, len(images), batch_size):
                prepared = list(pool.map(prepare, images[start:start + batch_size]))
                arrays = [a for a in prepared if not isinstance(a, str)]
                probs = (self.predict_arrays(np.stack(arrays)) if arrays
                         else np.zeros((0, len(self.classes)), dtype=np.float32))
                yield list(enumerate(prepared, start)), probs

    def _result(self, name: str, probs: np.ndarray, top_k: int, unknown_threshold: float | None) -> dict:
        order = np.argsort(-probs, kind="stable")[:max(1, top_k)]
        best = int(order[0])
        unknown = unknown_threshold is not None and float(probs[best]) < unknown_threshold
        return {
            "file": name,
            "label": self.classes[best],
            "probability": float(probs[best]),
            "top_k": [(self.classes[int(j)], float(probs[j])) for j in order],
            "unknown": bool(unknown),
            "answer": UNKNOWN_LABEL if unknown else self.classes[best],
            "error": None,
        }


def results_frame(results: list[dict]):
    """Prediction results as a pandas DataFrame (one row per image) for tables and CSV."""
    import pandas as pd

    rows = [{
        "file": r["file"],
        "answer": r["answer"],
        "label": r["label"],
        "probability": r["probability"],
        "unknown": r["unknown"],
        "top_k": "; ".join(f"{label} ({prob:.3f})" for label, prob in r["top_k"]),
        "error": r["error"] or "",
    } for r in results]
    return pd.DataFrame(rows, columns=["file", "answer", "label", "probability", "unknown", "top_k", "error"])


def results_csv(results: list[dict]) -> bytes:
    """Prediction results as CSV bytes (for a download button or a file)."""
    return results_frame(results).to_csv(index=False).encode("utf-8")


def _input_size(model, source: str) -> int:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise ExportError(
            f"The model from {source or 'the given file'} takes inputs of shape {shape}; expected "
            "(None, S, S, 3) raw RGB pixels, as Transfer Studio saves them."
        )
    return int(shape[1])


def _name_and_image(item, index: int):
    if isinstance(item, tuple) and len(item) == 2:
        return str(item[0]), item[1]
    if isinstance(item, (str, os.PathLike)):
        return str(item), item
    name = getattr(item, "name", None) or getattr(item, "filename", None)
    return (os.path.basename(str(name)) if name else f"image_{index + 1}"), item


def _error_result(name: str, message: str) -> dict:
    return {"file": name, "label": None, "probability": None, "top_k": [], "unknown": False,
            "answer": None, "error": message}


