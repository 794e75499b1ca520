"""Continuing a finished run (trained here or imported) on a dataset with the same classes.

``core.training.trainer.train_continued`` records a new run that starts from the earlier run's saved model instead of a
fresh network: training takes ``starting_point`` into the run's plan (``core.models.plan``) where it would build its model. The
starting model's outputs are reordered to the dataset's class order (Teachable Machine keeps its own order,
datasets sort theirs), its accuracy on the dataset's validation images is recorded before training
(``continued_from.before``), and the ordinary strategies then run on it: ``feature-extraction`` refits the head
on cached features of the model's own base (keyed by the model file's hash), ``fine-tune`` also unfreezes the top
of that base.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from core.errors import ConfigError, RunError
from core.models.backbones import BACKBONES, BackboneSpec
from core.models.weights import ResolvedWeights


@dataclass(frozen=True)
class StartingPoint:
    """What training needs to start from an earlier run's model."""

    spec: BackboneSpec
    image_size: int
    weights: ResolvedWeights
    source_run: str
    model_file: str
    source_classes: tuple[str, ...]
    mapping: dict

    def load_model(self, dataset_classes):
        """The earlier model, its outputs reordered to ``dataset_classes``."""
        import keras

        model = keras.saving.load_model(self.model_file, safe_mode=True)
        order = [self.source_classes.index(self.mapping[name]) for name in dataset_classes]
        predictions = model.get_layer("head").get_layer("predictions")
        values = predictions.get_weights()
        predictions.set_weights([values[0][:, order], *(value[order] for value in values[1:])])
        return model


def continue_config(workspace, source_run: str, dataset_id: str, **settings):
    """A ``TrainConfig`` that continues ``source_run`` on ``dataset_id``, and the record fields saying so.

    Backbone, input size and resize mode come from the earlier run; ``settings`` (strategy, epochs, learning
    rates, batch size, seed...) are the new run's own.

    Raises:
        RunError: the earlier run has no saved model.
        ConfigError: the dataset's classes do not match the run's (up to case and spacing).
    """
    from core.config import TrainConfig
    from core.data.class_mapping import match_classes
    from core.data.datasets import load_dataset
    from core.runs import load_run, model_path

    if settings.get("strategy") == "from-scratch":
        raise ConfigError("--strategy from-scratch starts from random weights; it cannot continue a run. Use "
                          "feature-extraction (refit the head) or fine-tune.")
    record = load_run(workspace, source_run)
    if not model_path(workspace, source_run).exists():
        raise RunError(f"Run {source_run} has no saved model (status: {record.get('status')}); continue a "
                       "finished run.")
    dataset = load_dataset(workspace, dataset_id)
    match = match_classes(record.get("classes") or [], dataset.classes, model=f"run {source_run}",
                          dataset=f"dataset {dataset.id}")
    source = record.get("config") or {}
    based = {key: source[key] for key in ("base_model", "cut_layer", "input_scaling") if source.get(key)}
    config = TrainConfig(dataset_id=dataset.id, backbone=source.get("backbone", "mobilenet_v2"),
                         image_size=record.get("image_size") or source.get("image_size"),
                         resize=source.get("resize", "squash"), **based, **settings)
    return config, {"continued_from": {"run_id": source_run, "class_mapping": match.mapping}}


def accuracy_before(record: dict) -> dict | None:
    """The starting model's accuracy on a continued run's validation images, recorded before it trained; else None."""
    before = (record.get("continued_from") or {}).get("before")
    return before if before and before.get("accuracy") is not None else None


def format_before(before: dict) -> str:
    """``before: 0.50 on val (10 images)``: the marked starting point of a continued run."""
    return f"before: {before['accuracy']:.2f} on {before['split']} ({before['num_images']} images)"


def continued_settings(config) -> dict:
    """The settings of ``config`` a continued run takes as its own (the rest come from the earlier run)."""
    inherited = {"dataset_id", "backbone", "image_size", "resize", "weights", "base_model", "cut_layer",
                 "input_scaling"}
    return {key: value for key, value in config.to_dict().items() if key not in inherited}


def starting_point(workspace, run_id: str) -> StartingPoint | None:
    """For a run that continues an earlier one: its starting model, and its accuracy before (recorded now).

    Returns None for an ordinary run (training builds a fresh model then).
    """
    from core.runs import load_run, model_path, update_run

    record = load_run(workspace, run_id)
    continued = record.get("continued_from")
    if not continued:
        return None
    source_run = continued["run_id"]
    source = load_run(workspace, source_run)
    path = model_path(workspace, source_run)
    if not path.exists():
        raise RunError(f"Run {source_run}, which run {run_id} continues, has no saved model any more.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    weights = ResolvedWeights(None, f"continued from run {source_run} ({source.get('weights')})", f"run-{digest}")
    start = StartingPoint(spec=spec_of_run(source), image_size=int(source.get("image_size") or 224),
                          weights=weights, source_run=source_run, model_file=str(path),
                          source_classes=tuple(source.get("classes") or ()), mapping=continued["class_mapping"])
    update_run(workspace, run_id, continued_from={**continued, "before": _accuracy_before(workspace, record)})
    return start


def spec_of_run(source: dict) -> BackboneSpec:
    """The registry entry of the earlier run's backbone, or one describing an imported MobileNetV2."""
    config = source.get("config") or {}
    name = config.get("backbone", "")
    if name in BACKBONES:
        return BACKBONES[name]
    if config.get("base_model"):  # trained on a run or a model file: its model is continued as it is
        from core.models.base_models import spec_of_based_run

        return spec_of_based_run(source)
    if config.get("strategy") != "imported":
        raise ConfigError(f"Run {source.get('run_id')} uses an unknown backbone {name!r}; it cannot be continued.")
    alpha, size = config.get("alpha", 1.0), int(config.get("image_size") or 224)
    base = BACKBONES["mobilenet_v2"]
    return replace(base, name=name, display_name=f"MobileNetV2 (alpha {alpha}, imported)", default_size=size,
                   allowed_sizes=(size,), weights_pattern="", constructor_kwargs={"alpha": alpha})


def _accuracy_before(workspace, record: dict) -> dict:
    """The earlier model's accuracy on the new run's validation images, as prepared for training."""
    from core.insight.evaluation import evaluate_run

    continued, dataset_id = record["continued_from"], record["config"]["dataset_id"]
    result = evaluate_run(workspace, continued["run_id"], "val", dataset_id=dataset_id,
                          class_mapping=continued["class_mapping"])
    return {"dataset_id": dataset_id, "split": "val", "accuracy": result.accuracy, "macro_f1": result.macro_f1,
            "num_images": result.num_images, "mean_confidence": float(np.mean(result.probabilities.max(1)))}
