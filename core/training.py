"""Training: the three strategies, run inside one process, recorded in the run store.

``execute_run(workspace, run_id)`` trains a run created by ``core.runs.create_run`` (the job
worker calls it); ``train_model(config, workspace)`` creates and trains one in the calling process
(the CLI). Feature extraction without augmentation takes the fast path: embeddings are cached
once (``core.features``) and only the head trains on them, sharing its weights with the full model.
"""

from __future__ import annotations

import math
import os
import time
import traceback

import keras
import numpy as np
import tensorflow as tf

from core import runs
from core.config import TrainConfig
from core.errors import ConfigError, StudioError, WorkspaceError
from core.progress import BestWeights, ProgressCallback, RunReporter, StopRequested
from core.workspace import WORKSPACE_ENV, Workspace


class Interrupted(Exception):
    """The worker was told to end (server shut down)."""


def train_model(config: TrainConfig, workspace: Workspace, *, on_epoch=None) -> dict:
    """Create a run for ``config`` and train it here; returns the final run record."""
    from core.datasets import load_dataset
    from core.jobs import process_start_time

    dataset = load_dataset(workspace, config.dataset_id)
    run_id = runs.create_run(workspace, config, classes=dataset.classes, status="running", pid=os.getpid(),
                             pid_started=process_start_time(os.getpid()))
    return execute_run(workspace, run_id, on_epoch=on_epoch)


def execute_run(workspace: Workspace, run_id: str, *, on_epoch=None) -> dict:
    """Train run ``run_id`` in this process and record how it ended (done, stopped, failed, interrupted)."""
    folder = runs.run_dir(workspace, run_id)
    record = runs.load_run(workspace, run_id)
    config = TrainConfig.from_dict(record["config"])
    reporter = RunReporter(folder, on_epoch=on_epoch)
    from core.jobs import process_start_time

    runs.update_run(workspace, run_id, status="running", pid=os.getpid(),
                    pid_started=process_start_time(os.getpid()), started_at=time.time(), error=None)
    timings: dict = {}
    started = time.perf_counter()
    final: dict = {}
    try:
        final = _train(workspace, run_id, config, reporter, timings)
        final["status"] = "stopped" if reporter.progress.get("stopped_by_user") else "done"
        final["error"] = None
    except StopRequested:
        final = {"status": "stopped", "error": "Stopped before the first epoch ended; no model was saved."}
    except Interrupted:
        final = {"status": "interrupted", "error": "The server shut down while this run was training."}
    except StudioError as exc:
        final = {"status": "failed", "error": str(exc)}
    except (MemoryError, tf.errors.ResourceExhaustedError) as exc:
        final = {"status": "failed", "error": "Out of memory while training. Lower the batch size or the "
                 "image size, or pick a smaller backbone.", "error_details": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # a bug or an environment fault: record it with its traceback
        final = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                 "error_details": traceback.format_exc()}
    timings["total_s"] = round(time.perf_counter() - started, 3)
    reporter.stage("finished")
    return runs.update_run(workspace, run_id, finished_at=time.time(), timings=timings, **final)


def _train(workspace: Workspace, run_id: str, config: TrainConfig, reporter: RunReporter, timings: dict) -> dict:
    from core.backbones import get_backbone
    from core.continuation import starting_point
    from core.datasets import load_dataset
    from core.distribute import choose_strategy, configure_precision
    from core.models import build_classifier
    from core.weights import resolve_weights

    reporter.stage("loading")
    dataset = load_dataset(workspace, config.dataset_id)
    if "val" not in dataset.splits:
        raise ConfigError(f"Dataset {dataset.id} has no validation split; ingest it again with a validation fraction.")
    start = starting_point(workspace, run_id)  # None unless this run continues an earlier one
    spec = start.spec if start else get_backbone(config.backbone)
    image_size = config.image_size or spec.default_size
    if image_size not in spec.allowed_sizes:
        raise ConfigError(f"image_size={image_size} is not allowed for {spec.display_name}; use one of "
                          f"{', '.join(map(str, spec.allowed_sizes))}.")
    weights = start.weights if start else resolve_weights(spec, image_size, config.weights)
    devices = configure_precision()
    runs.update_run(workspace, run_id, weights=weights.description, image_size=image_size, devices=devices)
    keras.utils.set_random_seed(config.seed)
    strategy = choose_strategy(config.distribution)
    with strategy.scope():
        model = start.load_model(dataset.classes) if start else build_classifier(
            spec, image_size=image_size, num_classes=len(dataset.classes), weights=weights,
            dropout=config.dropout, hidden_units=config.hidden_units, seed=config.seed)
    context = _Context(workspace, run_id, config, reporter, dataset, spec, image_size, weights, model, strategy,
                       devices["jit_compile"], timings)
    train_started = time.perf_counter()
    if config.strategy == "from-scratch":
        best = context.fit_images(phase=1, trainable="all", epochs=config.epochs,
                                  learning_rate=config.effective_learning_rate, augment=config.augment)
    elif config.augment:
        best = context.fit_images(phase=1, trainable="frozen", epochs=config.epochs,
                                  learning_rate=config.effective_learning_rate, augment=True)
    else:
        best = context.fit_head_on_features()
    if config.strategy == "fine-tune" and config.fine_tune_epochs > 0 and not reporter.progress.get("stopped_by_user"):
        layers = config.fine_tune_layers or spec.default_fine_tune_layers()
        best = context.fit_images(phase=2, trainable="top", top_layers=layers, epochs=config.fine_tune_epochs,
                                  learning_rate=config.fine_tune_learning_rate, augment=True, best=best)
    timings["train_s"] = round(time.perf_counter() - train_started - timings.get("features_s", 0.0), 3)
    reporter.stage("saving")
    path = save_model(model, runs.model_path(workspace, run_id))
    history = reporter.history
    return {
        "best_val_accuracy": best[0] if best else None,
        "val_loss": -best[1] if best else None,
        "epochs_run": len(history),
        "model_path": str(path),
        "image_size": image_size,
    }


def save_model(model, path):
    """Save ``model`` to ``path`` atomically; a full disk or a read-only folder gives a WorkspaceError."""
    staging = path.with_name(".model.tmp.keras")
    try:
        model.save(staging)
        os.replace(staging, path)
    except OSError as exc:
        staging.unlink(missing_ok=True)
        raise WorkspaceError(
            f"Could not save the model to {path}: {exc.strerror or exc}. Free some disk space or make the "
            f"workspace folder writable ({WORKSPACE_ENV}), then train again."
        ) from exc
    return path


class _Context:
    """What both phases of one run share."""

    def __init__(self, workspace, run_id, config, reporter, dataset, spec, image_size, weights, model, strategy,
                 jit_compile, timings):
        self.workspace, self.run_id, self.config, self.reporter = workspace, run_id, config, reporter
        self.dataset, self.spec, self.image_size, self.weights = dataset, spec, image_size, weights
        self.model, self.strategy, self.jit_compile, self.timings = model, strategy, jit_compile, timings
        self.folder = runs.run_dir(workspace, run_id)
        self.y_train = dataset.label_indices("train")
        self.y_val = dataset.label_indices("val")

    def class_weight(self) -> dict | None:
        counts = np.bincount(self.y_train, minlength=len(self.dataset.classes)).astype(float)
        ratio = counts.max() / max(counts.min(), 1.0)
        if self.config.class_weights == "off" or (self.config.class_weights == "auto" and ratio <= 1.5):
            return None
        weights = counts.sum() / (len(counts) * np.maximum(counts, 1.0))
        return {index: float(weight) for index, weight in enumerate(weights)}

    def callbacks(self, phase: int, steps: int, last_epoch: int, best) -> tuple[list, BestWeights]:
        progress = ProgressCallback(self.reporter, phase=phase, steps=steps, total_epochs=last_epoch)
        keeper = BestWeights(best=best)
        tensorboard = keras.callbacks.TensorBoard(log_dir=str(self.folder / "logs"), write_graph=False)
        callbacks = [progress, keeper, tensorboard]
        if self.config.early_stopping_patience:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss",
                                                           patience=self.config.early_stopping_patience))
        return callbacks, keeper

    def compile(self, model, learning_rate: float) -> None:
        with self.strategy.scope():
            model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                          jit_compile=self.jit_compile)

    def fit_head_on_features(self):
        from core.features import cached_features, extract_features, feature_key
        from core.models import feature_extractor, head_of
        from core.speed import record_speed

        started = time.perf_counter()
        self.reporter.stage("features")
        key = feature_key(self.dataset.id, self.spec.name, self.image_size, self.config.resize,
                          self.weights.fingerprint)
        was_cached = cached_features(self.workspace, key) is not None
        features = extract_features(self.workspace, key, feature_extractor(self.model), self.dataset,
                                    image_size=self.image_size, resize=self.config.resize,
                                    batch_size=self.config.batch_size, reporter=self.reporter,
                                    meta={"backbone": self.spec.name, "weights": self.weights.description})
        self.timings["features_s"] = round(time.perf_counter() - started, 3)
        runs.update_run(self.workspace, self.run_id, feature_key=key, features_cached=was_cached)
        if not was_cached:
            count = sum(len(array) for array in features.values())
            record_speed(self.workspace, self.spec.name, self.image_size, count / self.timings["features_s"])
        head = head_of(self.model)
        self.compile(head, self.config.effective_learning_rate)
        batch_size = self.config.batch_size
        train = tf.data.Dataset.from_tensor_slices((np.asarray(features["train"]), self.y_train))
        train = train.shuffle(len(self.y_train), seed=self.config.seed).batch(batch_size)
        val = tf.data.Dataset.from_tensor_slices((np.asarray(features["val"]), self.y_val)).batch(batch_size)
        steps = math.ceil(len(self.y_train) / batch_size)
        self.reporter.stage("phase 1", phase_started_epoch=1)
        return self._fit(head, train, val, phase=1, steps=steps, epochs=self.config.epochs, initial_epoch=0,
                         best=None)

    def fit_images(self, *, phase, trainable, epochs, learning_rate, augment, top_layers=0, best=None):
        from core.models import set_backbone_trainable
        from core.pipeline import make_image_dataset

        counts = set_backbone_trainable(self.model, trainable, top_layers)
        runs.update_run(self.workspace, self.run_id, **{f"phase{phase}_trainable": counts})
        self.compile(self.model, learning_rate)
        size, batch_size, resize = self.image_size, self.config.batch_size, self.config.resize
        train = make_image_dataset(self.dataset.paths("train"), self.y_train, image_size=size,
                                   batch_size=batch_size, resize=resize, shuffle=True, seed=self.config.seed,
                                   augment=build_augmentation(self.config.seed) if augment else None)
        val = make_image_dataset(self.dataset.paths("val"), self.y_val, image_size=size, batch_size=batch_size,
                                 resize=resize)
        initial_epoch = len(self.reporter.history)
        self.reporter.stage(f"phase {phase}", phase_started_epoch=initial_epoch + 1)
        steps = math.ceil(len(self.y_train) / batch_size)
        return self._fit(self.model, train, val, phase=phase, steps=steps, epochs=initial_epoch + epochs,
                         initial_epoch=initial_epoch, best=best)

    def _fit(self, model, train, val, *, phase, steps, epochs, initial_epoch, best):
        callbacks, keeper = self.callbacks(phase, steps, epochs, best)
        model.fit(train, validation_data=val, epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks,
                  class_weight=self.class_weight(), shuffle=False, verbose=0)  # the datasets shuffle
        return keeper.best


def build_augmentation(seed: int = 0) -> keras.Sequential:
    """Random flip, rotation, zoom, translation and contrast; used on training images only."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.1, seed=seed),
        keras.layers.RandomZoom(0.1, seed=seed),
        keras.layers.RandomTranslation(0.1, 0.1, seed=seed),
        keras.layers.RandomContrast(0.1, seed=seed),
    ], name="augmentation")
