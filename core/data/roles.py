"""Which images do what in a run: fit, choose (epochs, best weights), or report the headline accuracy.

The headline accuracy always comes from images that chose nothing:

- a dataset with a ``test`` split (uploaded, or carved at ingestion) reports on ``test``; ``val`` chooses;
- otherwise it reports on ``val``, and whatever must be chosen on held-out images (the best epoch of an image
  phase) is chosen on a stratified, content-grouped holdout carved from ``train``. Heads on cached embeddings are
  chosen by cross-validation inside the training images, so they need no holdout at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.data.splits import holdout_indices

HOLDOUT_FRACTION = 0.15


@dataclass(frozen=True)
class DataRoles:
    """Indices are positions within a split, in manifest order.

    Attributes:
        headline: The split the headline accuracy comes from (``test`` or ``val``).
        fit_index: Positions in ``train`` used to fit weights.
        selection_split: ``val``, ``train`` (a holdout of it), or ``""`` when nothing is chosen on held-out images.
        selection_index: Positions in ``selection_split`` used to choose.
    """

    headline: str
    fit_index: np.ndarray
    selection_split: str
    selection_index: np.ndarray

    @property
    def selection_name(self) -> str:
        """How a person should read where choices were made."""
        if self.selection_split == "val":
            return "val"
        if self.selection_split == "train":
            return f"holdout of {len(self.selection_index)} training images"
        return "cross-validation on train"

    def describe(self) -> dict:
        return {"headline_split": self.headline, "selection": self.selection_name,
                "fit_images": int(len(self.fit_index)), "selection_images": int(len(self.selection_index))}


def data_roles(dataset, *, needs_selection: bool, seed: int = 0) -> DataRoles:
    """The roles of a dataset's images for one run.

    Args:
        dataset: A ``core.data.datasets.Dataset`` with at least ``train`` and ``val``.
        needs_selection: True when the run chooses something on held-out images (an image phase's best epoch).
        seed: Seed of the holdout.
    """
    train_count = len(dataset.split_entries("train"))
    everything = np.arange(train_count)
    if "test" in dataset.splits:
        return DataRoles("test", everything, "val", np.arange(len(dataset.split_entries("val"))))
    if not needs_selection:
        return DataRoles("val", everything, "", np.arange(0))
    entries = dataset.split_entries("train")
    labels = [entry.label for entry in entries]
    holdout = np.asarray(holdout_indices(labels, dataset.content_groups("train"), HOLDOUT_FRACTION, seed),
                         dtype=np.int64)
    fit = np.setdiff1d(everything, holdout)
    return DataRoles("val", fit, "train", holdout)


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound near 0 and 1, unlike the normal approximation)."""
    if total <= 0:
        return (0.0, 1.0)
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_with_interval(y_true, probabilities, split: str, **extra) -> dict:
    """``{"split", "accuracy", "correct", "n", "ci95"}`` of predicted probabilities against labels."""
    y_true = np.asarray(y_true).reshape(-1)
    correct = int(np.sum(np.asarray(probabilities).argmax(axis=1) == y_true))
    total = int(len(y_true))
    low, high = wilson_interval(correct, total)
    return {"split": split, "accuracy": correct / total if total else None, "correct": correct, "n": total,
            "ci95": [round(low, 4), round(high, 4)], **extra}


def format_headline(headline: dict | None) -> str:
    """``0.948 on test (153 images, 95% CI 0.90-0.97)``, or ``-`` when there is none."""
    if not headline or headline.get("accuracy") is None:
        return "-"
    low, high = headline["ci95"]
    what = headline["split"] if headline.get("method") != "cross-validation" else "cross-validation"
    return f"{headline['accuracy']:.3f} on {what} ({headline['n']} images, 95% CI {low:.2f}-{high:.2f})"
