"""A Teachable Machine export rebuilt with Keras 3 layers and stored as an ordinary run.

Current Keras cannot load the Keras download (``DepthwiseConv2D(groups=...)``, nested Sequential models), and
nothing in Python reads the TensorFlow.js one; but both are ``keras.applications``' MobileNetV2 with Teachable
Machine's head, and layer names match. So the model is built here with the layout every other run has (``image``
-> ``preprocess_scale`` -> ``backbone`` -> ``pool`` -> ``head`` with ``predictions``), and the export's weights are
loaded by layer name. Teachable Machine's pixel preparation travels with the run: ``x / 127.5 - 1`` as a real
``Rescaling`` layer inside the model, and its Lanczos centre crop as the run's resize mode (``crop-lanczos``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.delivery.teachable import ExportFiles, TeachableExport, collect_files, read_export
from core.errors import ModelImportError, WorkspaceError
from core.run_state import RunStatus

BACKBONE_NAME = "teachable_machine"
STRATEGY_NAME = "imported"
RESIZE_MODE = "crop-lanczos"
MODEL_NAME = "teachable_machine_classifier"
FORMAT_NAMES = {"keras": "Teachable Machine Keras (keras_model.h5)",
                "tfjs": "Teachable Machine TensorFlow.js (model.json)"}


@dataclass(frozen=True)
class ImportConfig:
    """The ``config`` of an imported run: what prediction, evaluation and export read from any run."""

    image_size: int
    alpha: float
    format: str
    dataset_id: str | None = None
    backbone: str = BACKBONE_NAME
    strategy: str = STRATEGY_NAME
    resize: str = RESIZE_MODE

    def to_dict(self) -> dict:
        return {"dataset_id": self.dataset_id, "backbone": self.backbone, "strategy": self.strategy,
                "image_size": self.image_size, "resize": self.resize, "alpha": self.alpha,
                "imported_format": self.format}


def build_teachable_model(export: TeachableExport):
    """The export as a Keras 3 model taking raw RGB pixels (0..255), with its weights loaded.

    Raises:
        ModelImportError: a weight the rebuilt network lacks, or one whose shape differs (the export is not the
            MobileNetV2 it claims to be).
    """
    import keras

    size = export.image_size
    inputs = keras.Input((size, size, 3), dtype="float32", name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess_scale")(inputs)
    backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=export.alpha, include_top=False,
                                              weights=None)
    backbone.name = "backbone"
    backbone.trainable = False
    x = backbone(x, training=False)
    embedding = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    head = _build_head(export, int(embedding.shape[-1]))
    model = keras.Model(inputs, head(embedding), name=MODEL_NAME)
    _load_weights(backbone, head, export)
    return model


def _build_head(export: TeachableExport, num_features: int):
    import keras

    inputs = keras.Input((num_features,), name="embedding")
    x = inputs
    for position, dense in enumerate(export.head):
        last = position == len(export.head) - 1
        name = "predictions" if last else ("head_hidden" if position == 0 else f"head_hidden_{position + 1}")
        x = keras.layers.Dense(dense.units, activation=dense.activation, use_bias=dense.use_bias, name=name,
                               dtype="float32" if last else None)(x)
    return keras.Model(inputs, x, name="head")


def _load_weights(backbone, head, export: TeachableExport) -> None:
    import keras

    used = set()
    for layer in backbone.layers:
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        for variable in layer.weights:
            # Keras 2 (and TensorFlow.js) name a depthwise kernel "depthwise_kernel", Keras 3 "kernel".
            weight = "depthwise_kernel" if depthwise and variable.name == "kernel" else variable.name
            _assign(variable, f"{layer.name}/{weight}", export, used)
    dense_layers = [layer for layer in head.layers if isinstance(layer, keras.layers.Dense)]
    for spec, layer in zip(export.head, dense_layers, strict=True):
        for variable in layer.weights:
            _assign(variable, f"{spec.name}/{variable.name}", export, used)
    unused = sorted(set(export.weights) - used)
    if unused:
        raise ModelImportError(f"{_model_file(export)} has weights MobileNetV2 (alpha {export.alpha}) does not "
                               f"have, e.g. {', '.join(unused[:3])}; expected Teachable Machine's standard image "
                               "model.")


def _assign(variable, key: str, export: TeachableExport, used: set) -> None:
    value = export.weights.get(key)
    if value is None or tuple(value.shape) != tuple(variable.shape):
        found = "missing" if value is None else f"of shape {tuple(value.shape)}"
        raise ModelImportError(f"{_model_file(export)}: weight {key} is {found}, MobileNetV2 (alpha "
                               f"{export.alpha}) needs {tuple(variable.shape)}; expected Teachable Machine's "
                               "standard image model.")
    variable.assign(np.asarray(value, dtype=np.float32))
    used.add(key)


def _model_file(export: TeachableExport) -> str:
    return f"{'keras_model.h5' if export.format == 'keras' else 'model.json'} of '{export.source}'"


def import_teachable(workspace, source, *, name: str | None = None) -> dict:
    """Import a Teachable Machine export as a finished run.

    Args:
        workspace: the ``Workspace`` the run goes to, or a function returning it; the function is called only
            once the export has been read and rebuilt, so a refused import creates nothing at all.
        source: a path (zip, folder, or one of the export's files), an ``ExportFiles`` (uploads) or a
            ``TeachableExport`` already read.
        name: the run's display name (default: the export's model name or file name).

    Returns:
        The new run's record.

    Raises:
        ModelImportError: the files cannot be imported; nothing is written to the workspace then.
    """
    from core.runs import create_run, load_run, model_path, run_dir

    export = source if isinstance(source, TeachableExport) else read_export(
        source if isinstance(source, ExportFiles) else collect_files(source))
    model = build_teachable_model(export)
    workspace = workspace() if callable(workspace) else workspace
    config = ImportConfig(image_size=export.image_size, alpha=export.alpha, format=export.format)
    label = (name or "").strip() or export.metadata.get("modelName") or Path(export.source).stem
    record_fields = {
        "name": label,
        "weights": FORMAT_NAMES[export.format],
        "image_size": export.image_size,
        "imported_from": {"kind": "teachable_machine", "format": export.format, "source": export.source,
                          "files": export.files, "alpha": export.alpha, "image_size": export.image_size,
                          "head": [vars(dense) for dense in export.head], "metadata": export.metadata},
    }
    run_id = create_run(workspace, config, classes=export.classes, status=RunStatus.DONE, **record_fields)
    try:
        _save_model(model, model_path(workspace, run_id))
    except BaseException:
        shutil.rmtree(run_dir(workspace, run_id), ignore_errors=True)
        raise
    return load_run(workspace, run_id)


def _save_model(model, path: Path) -> None:
    staging = path.with_name(".model.tmp.keras")
    try:
        model.save(staging)
        os.replace(staging, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            staging.unlink()
        raise WorkspaceError(f"Could not save the imported model to {path}: {exc.strerror or exc}. Free some "
                             "disk space or make the workspace folder writable.") from exc


def is_imported(record: dict) -> bool:
    """True for a run imported from Teachable Machine."""
    return (record.get("imported_from") or {}).get("kind") == "teachable_machine"
