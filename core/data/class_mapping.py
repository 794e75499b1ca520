"""Matching a model's class names to a dataset's, so any run can be scored on any labelled dataset.

Names match when they are equal, or when they differ only in case or spacing (``Healthy_Leaves`` and ``healthy
leaves``); then the mapping is offered for a person to confirm on the Evaluate page, and applied (and reported)
by the command line. Classes may come in any order: a model's outputs keep its own order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ConfigError

ALL_SPLITS = "all"


def normalize_class_name(name: str) -> str:
    """``name`` in lower case with underscores, hyphens and runs of spaces as one space."""
    return " ".join(str(name).replace("_", " ").replace("-", " ").split()).casefold()


@dataclass(frozen=True)
class ClassMatch:
    """How a dataset's classes map onto a model's.

    Attributes:
        mapping: dataset class -> model class, for every dataset class.
        exact: every dataset class has exactly the model's name (only the order may differ).
    """

    mapping: dict[str, str]
    exact: bool

    def renamed(self) -> dict[str, str]:
        """The pairs whose names differ (what a person should confirm)."""
        return {data: model for data, model in self.mapping.items() if data != model}


def match_classes(model_classes, dataset_classes, *, mapping: dict | None = None, model: str = "the model",
                  dataset: str = "the dataset") -> ClassMatch:
    """Map ``dataset_classes`` onto ``model_classes`` (exact names, else names equal up to case and spacing).

    Args:
        model_classes: the model's class names, in output order.
        dataset_classes: the dataset's class names.
        mapping: an explicit dataset class -> model class mapping (e.g. confirmed on the page) to check and use.
        model: how to name the model in messages (e.g. ``run 2026...``).
        dataset: how to name the dataset in messages.

    Raises:
        ConfigError: the classes cannot be paired one to one; the message lists both sides.
    """
    model_classes, dataset_classes = [str(c) for c in model_classes], [str(c) for c in dataset_classes]
    if mapping is not None:
        return ClassMatch(_checked(mapping, model_classes, dataset_classes, model, dataset),
                          exact=all(key == value for key, value in mapping.items()))
    if set(model_classes) == set(dataset_classes) and len(model_classes) == len(dataset_classes):
        return ClassMatch({name: name for name in dataset_classes}, exact=True)
    by_key = {normalize_class_name(name): name for name in model_classes}
    keys = [normalize_class_name(name) for name in dataset_classes]
    if len(by_key) == len(model_classes) == len(set(keys)) == len(keys) and set(keys) == set(by_key):
        return ClassMatch({name: by_key[key] for name, key in zip(dataset_classes, keys, strict=True)}, exact=False)
    raise ConfigError(f"The classes of {dataset} ({', '.join(dataset_classes)}) do not match those of {model} "
                      f"({', '.join(model_classes)}), even ignoring case and spacing. Evaluate on a dataset with "
                      "the same classes, or rename its class folders.")


def _checked(mapping: dict, model_classes: list, dataset_classes: list, model: str, dataset: str) -> dict:
    mapping = {str(key): str(value) for key, value in mapping.items()}
    if set(mapping) != set(dataset_classes) or set(mapping.values()) != set(model_classes) or \
            len(set(mapping.values())) != len(mapping):
        raise ConfigError(f"The class mapping {mapping} must pair each class of {dataset} "
                          f"({', '.join(dataset_classes)}) with a different class of {model} "
                          f"({', '.join(model_classes)}).")
    return mapping


def labelled_images(dataset, split: str, mapping: dict, model_classes) -> tuple[list[Path], np.ndarray]:
    """Paths of a split (or ``all`` splits) and their labels as indices into ``model_classes``."""
    entries = list(dataset.entries) if split == ALL_SPLITS else dataset.split_entries(split)
    index = {name: position for position, name in enumerate(model_classes)}
    labels = np.array([index[mapping[entry.label]] for entry in entries], dtype=np.int64)
    return [dataset.root / entry.file for entry in entries], labels
