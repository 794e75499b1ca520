"""Evaluate a trained run: where the model is right, where it fails, and how sure it is.

``evaluate_predictions`` turns labels and predicted probabilities into metrics with plain
NumPy, so it is easy to test against hand-computed values. ``evaluate_run`` runs a run's
model over one split of its dataset (with the same image preparation as training and
prediction) and hands the result to ``evaluate_predictions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ConfigError, StudioError

DEFAULT_THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.0, 1.0, 21))


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of one model on one split.

    Attributes:
        classes: class names, in the model's output order.
        split: the evaluated split ("val", "test") or "" for raw predictions.
        accuracy: fraction of images whose top class is the true class.
        macro_f1: unweighted mean of per-class F1 (classes without support count as 0).
        per_class: one dict per class: class, precision, recall, f1, support.
        confusion: rows are true classes, columns predicted classes (counts).
        records: one dict per image: index, file, true, predicted, confidence, correct.
        thresholds: one dict per confidence threshold: threshold, coverage (fraction of images
            whose top probability is at least the threshold) and accuracy on those (None if none).
        run_id: the evaluated run, when there is one.
        probabilities: the raw (N, C) probabilities, kept out of ``to_dict``.
    """

    classes: tuple[str, ...]
    split: str
    accuracy: float
    macro_f1: float
    per_class: list[dict]
    confusion: list[list[int]]
    records: list[dict]
    thresholds: list[dict]
    run_id: str | None = None
    probabilities: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def num_images(self) -> int:
        return len(self.records)

    @property
    def accuracy_interval(self) -> tuple[float, float]:
        """95% Wilson interval of the accuracy."""
        from core.data.roles import wilson_interval

        correct = sum(1 for record in self.records if record["correct"])
        low, high = wilson_interval(correct, len(self.records))
        return (round(low, 4), round(high, 4))

    def to_dict(self, include_records: bool = True) -> dict:
        """A JSON-able dict (what ``python -m core evaluate --json`` prints)."""
        out = {
            "run_id": self.run_id,
            "split": self.split,
            "classes": list(self.classes),
            "num_images": self.num_images,
            "accuracy": self.accuracy,
            "ci95": list(self.accuracy_interval),
            "macro_f1": self.macro_f1,
            "per_class": self.per_class,
            "confusion_matrix": self.confusion,
            "thresholds": self.thresholds,
        }
        if include_records:
            out["records"] = self.records
        return out

    def per_class_frame(self):
        """Per-class precision / recall / F1 / support as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.per_class, columns=["class", "precision", "recall", "f1", "support"])

    def confusion_frame(self):
        """The confusion matrix as a DataFrame indexed by true class, columns predicted class."""
        import pandas as pd

        frame = pd.DataFrame(self.confusion, index=list(self.classes), columns=list(self.classes))
        frame.index.name, frame.columns.name = "true", "predicted"
        return frame

    def records_in_cell(self, true_label: str, predicted_label: str) -> list[dict]:
        """The images behind one confusion-matrix cell, most confident first."""
        cell = [r for r in self.records if r["true"] == true_label and r["predicted"] == predicted_label]
        return sorted(cell, key=lambda r: -r["confidence"])

    def mistakes(self) -> list[dict]:
        """Misclassified images, most confident (most misleading) first."""
        return sorted((r for r in self.records if not r["correct"]), key=lambda r: -r["confidence"])


def evaluate_predictions(y_true, probabilities, classes, files=None, *, split: str = "",
                         run_id: str | None = None, thresholds=DEFAULT_THRESHOLDS, names=None) -> EvaluationResult:
    """Compute metrics from true label indices and predicted probabilities.

    Args:
        y_true: int class indices, shape (N,).
        probabilities: predicted probabilities, shape (N, C) with C == len(classes).
        classes: class names in the model's output order.
        files: optional per-image names or paths (default: the image index as a string).
        split: name of the evaluated split, stored in the result.
        run_id: the evaluated run, stored in the result.
        thresholds: confidence thresholds for the coverage / accuracy curve.
        names: optional per-image names a person knows them by (the path inside their upload); default the
            last part of each file.

    Returns:
        An ``EvaluationResult``.

    Raises:
        ConfigError: shapes that do not match, labels out of range, or no images.
    """
    classes = tuple(str(c) for c in classes)
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    probs = np.asarray(probabilities, dtype=np.float64)
    _check_inputs(y_true, probs, classes, files)
    y_pred = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    correct = y_pred == y_true
    confusion = _confusion_matrix(y_true, y_pred, len(classes))
    per_class = _per_class_metrics(confusion, classes)
    files = [str(f) for f in files] if files is not None else [str(i) for i in range(len(y_true))]
    names = [str(n) for n in names] if names is not None else [Path(f).name for f in files]
    records = [
        {"index": i, "file": files[i], "name": names[i], "true": classes[y_true[i]], "predicted": classes[y_pred[i]],
         "confidence": float(confidence[i]), "correct": bool(correct[i])}
        for i in range(len(y_true))
    ]
    return EvaluationResult(
        classes=classes,
        split=split,
        accuracy=float(correct.mean()),
        macro_f1=float(np.mean([row["f1"] for row in per_class])),
        per_class=per_class,
        confusion=confusion.tolist(),
        records=records,
        thresholds=accuracy_by_threshold(confidence, correct, thresholds),
        run_id=run_id,
        probabilities=probs,
    )


def accuracy_by_threshold(confidence, correct, thresholds=DEFAULT_THRESHOLDS) -> list[dict]:
    """Coverage and accuracy when only answers with top probability >= threshold are kept."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    rows = []
    for threshold in thresholds:
        kept = confidence >= threshold
        count = int(kept.sum())
        rows.append({
            "threshold": float(threshold),
            "coverage": count / len(confidence) if len(confidence) else 0.0,
            "accuracy": float(correct[kept].mean()) if count else None,
            "count": count,
        })
    return rows


def _check_inputs(y_true, probs, classes, files) -> None:
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ConfigError(
            f"Got probabilities of shape {probs.shape} for {len(classes)} classes; expected (N, "
            f"{len(classes)}). Use the labels.json saved with the same model."
        )
    if len(y_true) != probs.shape[0] or len(y_true) == 0:
        raise ConfigError(
            f"Got {len(y_true)} labels and {probs.shape[0]} predictions; expected the same, non-zero "
            "number. Evaluate a split that has images."
        )
    if y_true.min() < 0 or y_true.max() >= len(classes):
        raise ConfigError(f"Label indices must be in 0..{len(classes) - 1}; got {y_true.min()}..{y_true.max()}.")
    if files is not None and len(files) != len(y_true):
        raise ConfigError(f"Got {len(files)} file names for {len(y_true)} images; expected one per image.")


def _confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def _per_class_metrics(confusion: np.ndarray, classes: tuple[str, ...]) -> list[dict]:
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    # 0/0 is reported as 0 (sklearn's zero_division=0) so that an unpredicted class lowers macro F1.
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return [
        {"class": name, "precision": float(precision[i]), "recall": float(recall[i]),
         "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(classes)
    ]


def evaluate_run(workspace, run_id: str, split: str = "val", *, batch_size: int = 32,
                 predictor=None, dataset_id: str | None = None, class_mapping: dict | None = None) -> EvaluationResult:
    """Evaluate a finished run's model on one split of its dataset, or of any dataset with the same classes.

    Args:
        workspace: the ``Workspace`` holding the run and its dataset.
        run_id: the run to evaluate.
        split: "val" (default), "test" (only when the dataset has a test split), "train", or "all" (every
            image; for a dataset the model was not trained on).
        batch_size: images per forward pass.
        predictor: an already loaded ``Predictor`` for this run (saves reloading the model).
        dataset_id: another dataset to score the run on (default: the run's own); its class names must match
            the run's, up to case and spacing (see ``core.data.class_mapping``).
        class_mapping: dataset class -> model class, when confirmed by a person.

    Returns:
        An ``EvaluationResult`` whose records name the absolute image paths.

    Raises:
        RunError: unknown run or a run without a model.
        ConfigError: a split the dataset does not have, a run without a dataset and none given, or classes
            that do not match.
        DatasetError: the run's dataset is gone or an image is unreadable.
    """
    from core.data.class_mapping import ALL_SPLITS, labelled_images, match_classes
    from core.data.datasets import load_dataset
    from core.models.prediction import Predictor
    from core.runs import load_run

    if split not in ("train", "val", "test", ALL_SPLITS):
        raise ConfigError(f"Unknown split {split!r}; expected 'val', 'test', 'train' or 'all'.")
    run = load_run(workspace, run_id)
    own = (run.get("config") or {}).get("dataset_id")
    if not (dataset_id or own):
        raise ConfigError(f"Run {run_id} has no dataset of its own (it was imported); choose a dataset to evaluate "
                          "it on (`python -m core evaluate RUN --dataset DATASET_ID`).")
    dataset = load_dataset(workspace, dataset_id or own)
    if split != ALL_SPLITS and (split not in dataset.splits or not dataset.split_entries(split)):
        raise ConfigError(
            f"Dataset {dataset.id} has no {split!r} split (it has: {', '.join(dataset.splits)}). "
            "Use --split val, or ingest a zip with a test/ folder to get a test split."
        )
    predictor = predictor or Predictor.from_run(workspace, run_id)
    classes = tuple(run.get("classes") or predictor.classes)
    if dataset.id == own and class_mapping is None:
        _check_same_classes(classes, dataset.classes, run_id, dataset.id)
    match = match_classes(classes, dataset.classes, mapping=class_mapping, model=f"run {run_id}",
                          dataset=f"dataset {dataset.id}")
    paths, labels = labelled_images(dataset, split, match.mapping, classes)
    sources = {str(dataset.root / entry.file): entry.source for entry in dataset.entries}
    probabilities = predictor.predict_probabilities(paths, batch_size=batch_size, stored=True)
    return evaluate_predictions(labels, probabilities, predictor.classes, files=[str(p) for p in paths],
                                names=[sources.get(str(p), p.name) for p in paths], split=split, run_id=run_id)


def _check_same_classes(model_classes, dataset_classes, run_id, dataset_id) -> None:
    if tuple(model_classes) != tuple(dataset_classes):
        raise ConfigError(
            f"Run {run_id} was trained on classes {list(model_classes)} but dataset {dataset_id} now has "
            f"{list(dataset_classes)}. Evaluate with the dataset the run was trained on."
        )


def evaluate_for_card(workspace, run_id, predictor, evaluation, split: str = "val"):
    """Metrics on the headline split and dataset for the model card; a note instead when they are unavailable."""
    from core.data.datasets import load_dataset

    dataset = note = None
    if not predictor.config.get("dataset_id"):
        return evaluation, None, ("Imported model without a dataset of its own: evaluate it on labelled images "
                                  f"with `python -m core evaluate {run_id} --dataset DATASET_ID`.")
    try:
        dataset = load_dataset(workspace, predictor.config.get("dataset_id", ""))
        if evaluation is None or evaluation.split != split:
            evaluation = evaluate_run(workspace, run_id, split, predictor=predictor)
    except StudioError as exc:
        # The dataset may have been deleted since training: the model is still worth exporting.
        note = f"Metrics unavailable: {exc}"
    return evaluation, dataset, note
