"""How fast each backbone runs on this machine, measured, and run-time estimates built on it.

Speeds come from two places: embedding extraction of finished runs (images per second of a real
forward pass) and an explicit ``measure_speed`` call. They are kept in ``workspace/speeds.json``.
"""

from __future__ import annotations

import time

import numpy as np

from core.workspace import Workspace, atomic_write_json, read_json

# A training step (forward + backward + update) costs about three forward passes.
TRAIN_STEP_COST = 3.0


def _speeds_path(workspace: Workspace):
    return workspace.root / "speeds.json"


def known_speeds(workspace: Workspace) -> dict[str, float]:
    """``{"<backbone>@<size>": images per second}`` measured on this machine so far."""
    return read_json(_speeds_path(workspace), default={})


def record_speed(workspace: Workspace, backbone: str, image_size: int, images_per_s: float) -> None:
    speeds = known_speeds(workspace)
    speeds[f"{backbone}@{image_size}"] = round(float(images_per_s), 2)
    atomic_write_json(_speeds_path(workspace), speeds)


def measure_speed(workspace: Workspace, backbone: str, image_size: int, batch_size: int = 16) -> float:
    """Time a forward pass of ``backbone`` (random weights: speed does not depend on them); records it."""
    from core.backbones import get_backbone
    from core.models import build_classifier, feature_extractor
    from core.weights import resolve_weights

    spec = get_backbone(backbone)
    model = build_classifier(spec, image_size=image_size, num_classes=2,
                             weights=resolve_weights(spec, image_size, "none"))
    extractor = feature_extractor(model)
    images = np.random.default_rng(0).uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    extractor.predict_on_batch(images)  # warm-up: graph tracing is not speed
    started = time.perf_counter()
    for _ in range(2):
        extractor.predict_on_batch(images)
    speed = 2 * batch_size / (time.perf_counter() - started)
    record_speed(workspace, backbone, image_size, speed)
    return speed


def estimate_seconds(config, *, images_per_s: float | None, num_train: int, num_total: int,
                     features_cached: bool = False) -> float | None:
    """Seconds a run of ``config`` should take at the measured forward speed; None when unmeasured."""
    if not images_per_s:
        return None
    seconds = 0.0
    if config.strategy == "from-scratch" or config.augment:
        seconds += config.epochs * num_train * TRAIN_STEP_COST / images_per_s
    else:
        seconds += 0.0 if features_cached else num_total / images_per_s
        seconds += config.epochs * 0.05  # head epochs on embeddings: milliseconds of work
    if config.strategy == "fine-tune":
        seconds += config.fine_tune_epochs * num_train * TRAIN_STEP_COST / images_per_s
    return seconds
