"""Export a run's model so it behaves outside the app exactly as it did inside.

Three formats: a bundle zip (``model.keras`` taking raw RGB pixels, labels, config, metrics, a
model card and a standalone ``predict.py``), TFLite (float32 or dynamic-range quantized) and a
TensorFlow SavedModel. ``check_parity`` runs every exported format over the validation images
and compares it with the in-app Keras model.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from core.delivery.model_card import render_model_card
from core.delivery.report import render_report_html
from core.errors import ExportError, StudioError
from core.insight.evaluation import evaluate_for_card
from core.models.conversion import convert_to_tflite, export_saved_model

FORMATS = ("bundle", "tflite", "savedmodel")
PARITY_FORMATS = ("bundle", "tflite", "tflite_dynamic", "savedmodel")
MIN_AGREEMENT = 0.99
FLOAT_TOLERANCE = 1e-4           # float formats: largest probability difference on any image
QUANTIZED_MEAN_TOLERANCE = 0.02  # int8 weights: a few images can move by 0.3; the mean difference stays small
QUANTIZED_FORMATS = ("tflite_dynamic",)
GENERATED_PARITY_IMAGES = 32
_PREDICT_SCRIPT = Path(__file__).with_name("bundle_predict.py")


def export_bundle(workspace, run_id: str, out_path, *, evaluation=None) -> Path:
    """Write a self-contained bundle zip of a run.

    Args:
        workspace: the ``Workspace`` holding the run.
        run_id: the run to export.
        out_path: the zip to write (".zip" is added when missing), or an existing folder to put
            ``<run_id>-bundle.zip`` in.
        evaluation: an ``EvaluationResult`` on the validation split, if already computed.

    Returns:
        The path of the written zip.

    Raises:
        RunError: unknown run or a run without a model.
        ExportError: the zip cannot be written.
    """
    from core.models.prediction import Predictor
    from core.runs import load_history, load_run, model_path

    run = load_run(workspace, run_id)
    predictor = Predictor.from_run(workspace, run_id)
    split = (run.get("headline") or {}).get("split", "val")
    evaluation, dataset, note = evaluate_for_card(workspace, run_id, predictor, evaluation, split)
    config = {**(run.get("config") or {}), "image_size": predictor.image_size, "resize": predictor.resize,
              "max_side": predictor.max_side,
              "run_id": run_id, "input": "float32 (N, S, S, 3) raw RGB pixels 0..255"}
    if run.get("imported_from"):  # where an imported model came from, with its files' hashes
        config["imported_from"] = run["imported_from"]
    metrics = {
        "run_id": run_id,
        "best_val_accuracy": run.get("best_val_accuracy"),
        "headline": run.get("headline"),
        "cv_estimate": run.get("cv_estimate"),
        "epochs_run": run.get("epochs_run"),
        "evaluation": evaluation.to_dict(include_records=False) if evaluation else None,
        "note": note,
    }
    files = {
        "model.keras": _read(model_path(workspace, run_id)),
        "labels.json": _json_bytes(list(predictor.classes)),
        "config.json": _json_bytes(config),
        "metrics.json": _json_bytes(metrics),
        "MODEL_CARD.md": render_model_card(run, config, predictor.classes, evaluation, dataset, note).encode(),
        "REPORT.html": render_report_html(run, config, predictor.classes, evaluation=evaluation, dataset=dataset,
                                          history=load_history(workspace, run_id), note=note).encode(),
        "predict.py": _read(_PREDICT_SCRIPT),
    }
    tflite = run_tflite(workspace, run_id, predictor.model)
    if tflite is not None:
        files["model.tflite"] = tflite
    return _write_zip(_target_file(out_path, f"{run_id}-bundle.zip"), files)


def run_tflite(workspace, run_id: str, model) -> bytes | None:
    """The run's ``model.tflite`` (converted once, kept next to ``model.keras``); None when conversion fails."""
    from core.models.fast_models import TFLITE_NAME
    from core.runs import model_path
    from core.workspace import atomic_write_bytes

    keras_path = model_path(workspace, run_id)
    tflite = keras_path.with_name(TFLITE_NAME)
    if tflite.is_file() and tflite.stat().st_mtime >= keras_path.stat().st_mtime:
        return tflite.read_bytes()
    try:
        content = convert_to_tflite(model)
    except ExportError:  # the bundle still works with model.keras; predict.py then says it uses Keras
        return None
    try:
        atomic_write_bytes(tflite, content)
    except StudioError:  # a read-only run folder: the bundle still gets the file
        pass
    return content


def export_tflite(workspace, run_id: str, out_path, *, quantize: str | None = None) -> Path:
    """Convert a run's model to a ``.tflite`` file (float32, or dynamic-range int8 weights).

    Args:
        workspace: the ``Workspace`` holding the run.
        run_id: the run to export.
        out_path: the file to write (".tflite" added when missing) or an existing folder.
        quantize: None (float32) or "dynamic" (int8 weights, float activations; ~4x smaller).

    Returns:
        The path of the written file.
    """
    from core.runs import load_run_model

    if quantize not in (None, "dynamic"):
        raise ExportError(f"Unknown quantization {quantize!r}; expected none or 'dynamic'.")
    suffix = "-dynamic.tflite" if quantize else ".tflite"
    target = _target_file(out_path, f"{run_id}{suffix}", suffix=".tflite")
    data = convert_to_tflite(load_run_model(workspace, run_id), quantize=quantize)
    _write_file(target, data)
    return target


def export_savedmodel(workspace, run_id: str, out_path) -> Path:
    """Write a TensorFlow SavedModel folder (signature ``serve``: raw pixels -> probabilities)."""
    from core.runs import load_run_model

    target = Path(out_path).expanduser()
    if target.is_dir() and any(target.iterdir()):
        target = target / f"{run_id}-savedmodel"  # an existing folder: put the SavedModel inside it
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExportError(f"{target} already exists and is not empty; expected a new folder. Choose another --out.")
    model = load_run_model(workspace, run_id)
    staging = Path(tempfile.mkdtemp(prefix=".savedmodel-", dir=_parent_dir(target)))
    try:
        export_saved_model(model, staging / "model")
        if target.exists():
            target.rmdir()
        os.replace(staging / "model", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def export_model(workspace, run_id: str, fmt: str, out_path, *, quantize: str | None = None) -> Path:
    """Dispatch on ``fmt`` in ``FORMATS`` (what the CLI and the Runs page call)."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}.")
    if quantize and fmt != "tflite":
        raise ExportError(f"Quantization applies to TFLite only; got --quantize {quantize} with {fmt}.")
    if fmt == "bundle":
        return export_bundle(workspace, run_id, out_path)
    if fmt == "tflite":
        return export_tflite(workspace, run_id, out_path, quantize=quantize)
    return export_savedmodel(workspace, run_id, out_path)


def check_parity(workspace, run_id: str, formats=PARITY_FORMATS, *, max_images: int | None = None,
                 batch_size: int = 32, on_batch=None) -> dict:
    """Compare exported formats with the in-app Keras model on the validation images.

    A run without a dataset of its own (an imported model) is checked on generated pictures instead.

    Args:
        workspace: the ``Workspace`` holding the run and its dataset.
        run_id: the run to check.
        formats: any of "bundle" (model.keras reloaded in safe mode), "tflite", "tflite_dynamic",
            "savedmodel".
        max_images: check only the first N validation images (None: all).
        batch_size: images per forward pass.
        on_batch: optional function called with ``(images checked, images)`` after each batch (a job's
            progress; it may raise to end the check, as Stop does).

    Returns:
        ``{format: {"agreement", "max_abs_diff", "mean_abs_diff", "images", "tolerance", "tolerance_on",
        "passed"}}``: agreement is the fraction of images with the same top class (must be >= 0.99);
        max_abs_diff and mean_abs_diff the largest and the mean probability difference. ``tolerance`` bounds
        the difference named by ``tolerance_on``: the largest within 1e-4 for float formats, the mean within
        0.02 for quantized ones (their largest difference is reported, not bounded).
    """
    from core.models.prediction import Predictor

    unknown = [f for f in formats if f not in PARITY_FORMATS]
    if unknown:
        raise ExportError(f"Unknown parity format(s) {unknown}; expected some of {', '.join(PARITY_FORMATS)}.")
    predictor = Predictor.from_run(workspace, run_id)
    paths = _validation_paths(workspace, predictor, max_images)
    reference, outputs = [], {fmt: [] for fmt in formats}
    with tempfile.TemporaryDirectory(prefix="ts-parity-") as folder:
        runners = {fmt: _format_runner(fmt, workspace, run_id, predictor.model, Path(folder)) for fmt in formats}
        # Batch by batch so a large validation split never sits in memory as one array.
        for start in range(0, len(paths), batch_size):
            batch = np.stack([predictor.prepare(p) for p in paths[start:start + batch_size]])
            reference.append(predictor.predict_arrays(batch))
            for fmt, runner in runners.items():
                outputs[fmt].append(np.asarray(runner(batch), dtype=np.float32))
            if on_batch is not None:
                on_batch(min(start + batch_size, len(paths)), len(paths))
    reference = np.concatenate(reference)
    return {fmt: _parity_row(fmt, np.concatenate(outputs[fmt]), reference) for fmt in formats}


def _parity_row(fmt: str, probs: np.ndarray, reference: np.ndarray) -> dict:
    agreement = float(np.mean(probs.argmax(1) == reference.argmax(1)))
    differences = np.abs(probs - reference)
    row = {"agreement": agreement, "max_abs_diff": float(np.max(differences)),
           "mean_abs_diff": float(np.mean(differences)), "images": int(len(reference))}
    quantized = fmt in QUANTIZED_FORMATS
    row["tolerance"] = QUANTIZED_MEAN_TOLERANCE if quantized else FLOAT_TOLERANCE
    row["tolerance_on"] = "mean_abs_diff" if quantized else "max_abs_diff"
    row["passed"] = agreement >= MIN_AGREEMENT and row[row["tolerance_on"]] <= row["tolerance"]
    return row


def describe_parity(fmt: str, row: dict) -> str:
    """One line saying what was compared, the figures, the tolerance and the verdict of a parity row."""
    bound = "largest" if row["tolerance_on"] == "max_abs_diff" else "mean"
    kind = "quantized" if fmt in QUANTIZED_FORMATS else "float"
    return (f"parity of {fmt} with the in-app Keras model on {row['images']} validation images: same class on "
            f"{row['agreement']:.2%} (needs {MIN_AGREEMENT:.0%}), probability difference largest "
            f"{row['max_abs_diff']:.3g}, mean {row['mean_abs_diff']:.3g} ({kind} tolerance: {bound} at most "
            f"{row['tolerance']:g}): {'ok' if row['passed'] else 'FAILED'}")


def _validation_paths(workspace, predictor, max_images):
    from core.data.datasets import load_dataset

    if not predictor.config.get("dataset_id"):  # an imported model has no images of its own: draw some
        return _generated_images(max_images or GENERATED_PARITY_IMAGES)
    dataset = load_dataset(workspace, predictor.config.get("dataset_id", ""))
    paths = dataset.paths("val") if "val" in dataset.splits else []
    if not paths:
        raise ExportError(f"Dataset {dataset.id} has no validation images; the parity check needs some.")
    return paths[:max_images] if max_images else paths


def _generated_images(count: int) -> list:
    """``count`` generated pictures (the sample dataset's shapes), the same on every call."""
    from core.data.sample import SAMPLE_CLASSES, draw_sample_image

    rng = np.random.default_rng(0)
    return [draw_sample_image(SAMPLE_CLASSES[i % len(SAMPLE_CLASSES)], rng, side=160) for i in range(count)]


def _format_runner(fmt: str, workspace, run_id: str, model, folder: Path):
    """A function: prepared batch -> probabilities, running the model as exported in ``fmt``."""
    if fmt == "bundle":
        from core.models.prediction import Predictor
        from core.runs import model_path

        # The safe-mode reload of model.keras itself, even when a model.tflite sits beside it.
        reloaded = Predictor.from_keras_file(model_path(workspace, run_id), use_litert=False)
        return reloaded.predict_arrays
    if fmt == "savedmodel":
        import tensorflow as tf

        export_saved_model(model, folder / "savedmodel")
        loaded = tf.saved_model.load(str(folder / "savedmodel"))
        return lambda batch: loaded.serve(tf.constant(batch, dtype=tf.float32)).numpy()
    content = convert_to_tflite(model, quantize="dynamic" if fmt == "tflite_dynamic" else None)
    return _TFLiteRunner(content)


class _TFLiteRunner:
    """Runs a TFLite model on batches of any size (resizing the input tensor when it changes)."""

    def __init__(self, content: bytes):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # the maintained runtime is missing: TensorFlow's deprecated copy works too
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter  # noqa: N806
        from core.models.litert import cpu_threads

        self._interpreter = Interpreter(model_content=content, num_threads=cpu_threads())
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] != self._batch:
            self._interpreter.resize_tensor_input(self._input, list(batch.shape))
            self._interpreter.allocate_tensors()
            self._batch = batch.shape[0]
        self._interpreter.set_tensor(self._input, batch.astype(np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output).copy()


def _target_file(out_path, default_name: str, suffix: str = ".zip") -> Path:
    path = Path(out_path).expanduser()
    if path.is_dir():
        return path / default_name
    return path if path.suffix == suffix else path.with_name(path.name + suffix)


def _parent_dir(path: Path) -> Path:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"Cannot create {parent}: {exc.strerror or exc}. Choose a folder you can write.") from exc
    return parent


def _write_zip(target: Path, files: dict[str, bytes]) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    _write_file(target, buffer.getvalue())
    return target


def _write_file(target: Path, data: bytes) -> None:
    from core.workspace import atomic_write_bytes

    _parent_dir(target)
    try:
        atomic_write_bytes(target, data)
    except StudioError as exc:
        raise ExportError(str(exc)) from exc


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ExportError(f"Cannot read {path}: {exc.strerror or exc}.") from exc


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, indent=2, default=str).encode("utf-8")
