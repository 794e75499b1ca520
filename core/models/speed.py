"""How fast each backbone runs on this machine, measured per runtime, and run-time estimates built on it.

Speeds come from two places: embedding extraction of finished runs (a real pass over a dataset) and
``measure_speed`` (a few batches of the current dataset's real images through the runtime a run would
use). They are kept per runtime (``keras``, ``litert``) in ``workspace/speeds.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from core.workspace import Workspace, atomic_write_json, read_json

# A training step (forward + backward + update) costs about three forward passes.
TRAIN_STEP_COST = 3.0
RUNTIME_NAMES = {"keras": "Keras (TensorFlow)", "litert": "LiteRT (XNNPACK)"}
MEASURE_IMAGES = 64


@dataclass(frozen=True)
class SpeedFigure:
    """A measured forward speed: images per second, on which runtime, measured on what."""

    images_per_s: float
    runtime: str
    measured_on: str = ""

    @property
    def label(self) -> str:
        return f"{self.images_per_s:.0f} images/s with {RUNTIME_NAMES.get(self.runtime, self.runtime)}"


def _speeds_path(workspace: Workspace):
    return workspace.root / "speeds.json"


def _entries(workspace: Workspace) -> dict[str, dict]:
    raw = read_json(_speeds_path(workspace), default={})
    # An older speeds.json held one Keras figure per key.
    return {key: ({"keras": {"images_per_s": value}} if isinstance(value, (int, float)) else value)
            for key, value in raw.items()}


def speed_figures(workspace: Workspace, backbone: str, image_size: int) -> dict[str, SpeedFigure]:
    """``{runtime: SpeedFigure}`` measured here for ``backbone`` at ``image_size``."""
    entry = _entries(workspace).get(f"{backbone}@{image_size}", {})
    return {runtime: SpeedFigure(float(item["images_per_s"]), runtime, item.get("measured_on", ""))
            for runtime, item in entry.items() if item.get("images_per_s")}


def latest_figure(workspace: Workspace, backbone: str, image_size: int) -> SpeedFigure | None:
    """The figure measured last for ``backbone`` at ``image_size`` (any runtime), or None."""
    entry = _entries(workspace).get(f"{backbone}@{image_size}", {})
    runtime = max(entry, key=lambda name: entry[name].get("measured_at") or 0.0, default=None)
    return speed_figures(workspace, backbone, image_size).get(runtime) if runtime else None


def known_speeds(workspace: Workspace) -> dict[str, float]:
    """``{"<backbone>@<size>": images per second}``: the fastest runtime measured so far for each."""
    return {key: max(float(item.get("images_per_s") or 0.0) for item in entry.values())
            for key, entry in _entries(workspace).items() if entry}


def record_speed(workspace: Workspace, backbone: str, image_size: int, images_per_s: float, *,
                 runtime: str = "keras", measured_on: str = "") -> None:
    entries = _entries(workspace)
    entries.setdefault(f"{backbone}@{image_size}", {})[runtime] = {
        "images_per_s": round(float(images_per_s), 2), "measured_on": measured_on, "measured_at": time.time()}
    atomic_write_json(_speeds_path(workspace), entries)


def plan_for(backbone: str, image_size: int, *, weights: str, num_images: int, fingerprint: str | None = None):
    """The ``core.models.extractors.ExtractionPlan`` a run would follow (without building a model); ``fingerprint``: of
    the ImageNet weights when already known (a ``core.models.plan.RunPlan``'s)."""
    from core.models.backbones import get_backbone
    from core.models.extractors import plan_extraction
    from core.models.weights import resolve_weights, weights_available

    spec = get_backbone(backbone)
    if weights != "imagenet":
        fingerprint = None
    elif fingerprint is None and weights_available(spec, image_size):
        fingerprint = resolve_weights(spec, image_size, "imagenet").fingerprint
    return plan_extraction(backbone, image_size, fingerprint, num_images)


def expected_speed(workspace: Workspace, backbone: str, image_size: int, *, weights: str = "imagenet",
                   num_images: int = 0):
    """(plan, SpeedFigure of the plan's runtime or None when that runtime is unmeasured here)."""
    plan = plan_for(backbone, image_size, weights=weights, num_images=num_images)
    return plan, speed_figures(workspace, backbone, image_size).get(plan.runtime)


def _sample_paths(dataset, limit: int) -> list:
    paths = [path for split in dataset.splits for path in dataset.paths(split)]
    step = max(1, len(paths) // limit)
    return paths[::step][:limit]


def measure_speed(workspace: Workspace, backbone: str, image_size: int, batch_size: int = 16, *, dataset=None,
                  weights: str = "imagenet", runtime: str | None = None, reporter=None) -> float:
    """Time the extractor a run would use on real images of ``dataset``; records and returns images/s.

    The runtime is ``runtime`` (``keras``), or by default the one ``plan_for`` picks for the whole dataset
    (a conversion it calls for is made here and kept for the run). Without a dataset, random pixels are
    timed on Keras. ``reporter`` (a ``core.progress.RunReporter``, as in a speed job) gets the stages
    ``preparing`` and ``timing`` (batches timed of batches) and may stop it between batches.
    """
    from core.models.backbones import get_backbone
    from core.models.classifier import build_classifier, feature_extractor
    from core.models.extractors import FastExtractor
    from core.models.weights import resolve_weights

    spec = get_backbone(backbone)
    if reporter is not None:
        reporter.stage("preparing")
    num_images = len(dataset.entries) if dataset is not None else 0
    plan = plan_for(backbone, image_size, weights=weights, num_images=num_images) if dataset is not None else None
    use_litert = plan is not None and plan.runtime == "litert" and runtime != "keras"
    resolved = resolve_weights(spec, image_size, weights if use_litert else "none")
    model = build_classifier(spec, image_size=image_size, num_classes=2, weights=resolved)
    extractor = feature_extractor(model)
    if use_litert:
        extractor = FastExtractor(extractor, plan, backbone=backbone, image_size=image_size,
                                  weights_fingerprint=resolved.fingerprint)
    batches, measured_on = _measure_batches(dataset, image_size, batch_size)
    # Full batches only: another shape would be traced (Keras) or reallocated (LiteRT) inside the timing.
    batches = [batch for batch in batches if len(batch) == len(batches[0])]
    extractor.predict_on_batch(batches[0])  # warm-up: tracing, conversion or allocation is not speed
    speed = _time_batches(extractor, batches[1:] or batches, reporter)
    runtime = getattr(extractor, "runtime", "keras")
    record_speed(workspace, backbone, image_size, speed, runtime=runtime, measured_on=measured_on)
    return speed


def _time_batches(extractor, batches: list[np.ndarray], reporter=None) -> float:
    """Images per second of ``extractor`` over ``batches`` (the reporter's bookkeeping is left out of the time)."""
    if reporter is not None:
        reporter.stage("timing")
    count, seconds = 0, 0.0
    for index, batch in enumerate(batches):
        started = time.perf_counter()
        count += len(extractor.predict_on_batch(batch))
        seconds += time.perf_counter() - started
        if reporter is not None:
            from core.progress import check_stop

            reporter.batch(index + 1, len(batches))
            check_stop(reporter)
    return count / seconds


def _measure_batches(dataset, image_size: int, batch_size: int) -> tuple[list[np.ndarray], str]:
    if dataset is None:
        images = np.random.default_rng(0).uniform(0, 255, (batch_size, image_size, image_size, 3))
        return [images.astype("float32")] * 3, "random pixels"
    from core.models.pipeline import make_image_dataset

    paths = _sample_paths(dataset, MEASURE_IMAGES)
    batches = [np.asarray(images) for images in make_image_dataset(paths, image_size=image_size,
                                                                   batch_size=batch_size)]
    timed = sum(len(batch) for batch in batches[1:] if len(batch) == len(batches[0])) or len(batches[0])
    return batches, f"{timed} images of {dataset.name}"


def estimate_seconds(config, *, images_per_s: float | None, num_train: int, num_total: int,
                     features_cached: bool = False, features_images_per_s: float | None = None,
                     conversion_s: float = 0.0) -> float | None:
    """Seconds a run of ``config`` should take; None when unmeasured.

    ``images_per_s`` is the Keras forward speed (training steps run on Keras); ``features_images_per_s``
    that of the runtime the feature pass will use (default the same), plus ``conversion_s`` when the pass
    converts first.
    """
    needs_keras = config.strategy == "from-scratch" or config.augment or config.strategy == "fine-tune"
    if needs_keras and not images_per_s:
        return None
    if not (features_cached or features_images_per_s or images_per_s):  # a feature pass of unknown speed
        return None
    seconds = 0.0
    if config.strategy == "from-scratch" or config.augment:
        seconds += config.epochs * num_train * TRAIN_STEP_COST / images_per_s
    else:
        if not features_cached:
            seconds += conversion_s + num_total / (features_images_per_s or images_per_s)
        seconds += config.epochs * 0.05  # head epochs on embeddings: milliseconds of work
    if config.strategy == "fine-tune":
        seconds += config.fine_tune_epochs * num_train * TRAIN_STEP_COST / images_per_s
    return seconds
