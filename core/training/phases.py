"""The phases of one run: a head on cached embeddings, image phases (frozen, top or whole backbone), and the
headline accuracy of the model that is saved.

Best weights are tracked across phases (``Best``): an image phase starts from the score *and the weights* of
what came before, so a fine-tune phase that never beats its head leaves the head's model in place.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from core import runs
from core.data.roles import DataRoles, accuracy_with_interval
from core.progress import Best, BestWeights, ProgressCallback
from core.training.distribute import is_multi_worker

SMALL_HEADLINE = 200  # below this many headline images a cross-validated estimate is added
DEFAULT_SPEED = 40.0  # images/s of a forward pass, when nothing was measured on this machine yet


@dataclass
class RunParts:
    """What the phases of one run share (named, so nothing is passed by position)."""

    workspace: object
    run_id: str
    config: object
    reporter: object
    dataset: object
    spec: object
    image_size: int
    weights: object
    built: object  # the Keras model, or a concurrent.futures.Future of it (built while the embeddings come)
    strategy: object
    jit_compile: bool
    timings: dict
    roles: DataRoles
    features: dict | None = None
    backbone_changed: bool = False
    speed: float | None = field(default=None)
    head_candidate: object = None
    plan: object = None  # the run's core.models.plan.RunPlan
    build_waited_s: float = 0.0  # seconds the run waited for a model built in the background

    @property
    def model(self):
        """The run's Keras model (waited for, the first time, when it is still being built in the background)."""
        if isinstance(self.built, Future):
            started = time.perf_counter()
            model = self.built.result()
            self.build_waited_s += time.perf_counter() - started
            self.built = model
        return self.built

    @model.setter
    def model(self, model) -> None:
        self.built = model

    @property
    def model_pending(self) -> bool:
        """True while the model is still being built in the background."""
        return isinstance(self.built, Future) and not self.built.done()

    @property
    def folder(self):
        return runs.run_dir(self.workspace, self.run_id)

    @property
    def num_classes(self) -> int:
        return len(self.dataset.classes)

    def labels(self, split: str, index=None) -> np.ndarray:
        labels = self.dataset.label_indices(split)
        return labels if index is None else labels[index]

    def paths(self, split: str, index=None) -> list:
        paths = self.dataset.paths(split)
        return paths if index is None else [paths[i] for i in index]

    def fine_tune_layers(self) -> int:
        """Backbone layers a fine-tune phase unfreezes: the setting, else the whole backbone (BatchNorm frozen)."""
        if self.config.fine_tune_layers:
            return self.config.fine_tune_layers
        return len(self.model.get_layer("backbone").layers)

    def forward_speed(self) -> float:
        """Images/s of a Keras forward pass here (image phases train with Keras, whatever computed features)."""
        if self.speed:
            return self.speed
        from core.models.speed import speed_figures

        keras_figure = speed_figures(self.workspace, self.spec.name, self.image_size).get("keras")
        return (keras_figure.images_per_s if keras_figure else None) or DEFAULT_SPEED

    def work_plan(self) -> list[tuple[str, float]]:
        """Estimated seconds of every stage still to come, in order (for the whole-run ETA)."""
        from core.models.speed import TRAIN_STEP_COST

        config, speed = self.config, self.forward_speed()
        fit = len(self.roles.fit_index)
        selection = len(self.roles.selection_index)
        headline = len(self.dataset.split_entries(self.roles.headline))
        total = len(self.dataset.entries)
        image_epoch = (fit * TRAIN_STEP_COST + selection) / speed
        plan = []
        if config.strategy == "from-scratch" or config.augment:
            plan.append(("phase 1", config.epochs * image_epoch))
        else:
            plan += [("features", total / speed), ("phase 1", 2.0)]
        if config.strategy == "fine-tune" and config.fine_tune_epochs:
            plan.append(("phase 2", config.fine_tune_epochs * image_epoch))
        plan += [("saving", 1.0), ("evaluating", headline / speed if config.strategy != "feature-extraction" else 0.2)]
        return plan

    def compile(self, model, learning_rate) -> None:
        with self.strategy.scope():
            model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                          jit_compile=self.jit_compile)

    def class_weight(self) -> dict | None:
        labels = self.labels("train", self.roles.fit_index)
        counts = np.bincount(labels, minlength=self.num_classes).astype(float)
        ratio = counts.max() / max(counts.min(), 1.0)
        if self.config.class_weights == "off" or (self.config.class_weights == "auto" and ratio <= 1.5):
            return None
        weights = counts.sum() / (len(counts) * np.maximum(counts, 1.0))
        return {index: float(weight) for index, weight in enumerate(weights)}

    def callbacks(self, phase: int, steps: int, last_epoch: int, best: Best | None, validation_steps: int):
        progress = ProgressCallback(self.reporter, phase=phase, steps=steps, total_epochs=last_epoch,
                                    validation_steps=validation_steps)
        keeper = BestWeights(best=best, target=self.model, cut_short=lambda: progress.stopped_by_user)
        tensorboard = keras.callbacks.TensorBoard(log_dir=str(self.folder / "logs"), write_graph=False)
        callbacks = [progress, keeper, tensorboard]
        if self.config.early_stopping_patience:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss",
                                                           patience=self.config.early_stopping_patience))
        return callbacks, keeper


def learning_rate_schedule(learning_rate: float, steps_per_epoch: int, epochs: int, *, warmup: bool):
    """Cosine decay over the phase, after one epoch of linear warm-up when ``warmup`` (and the phase is long)."""
    total = max(1, steps_per_epoch * epochs)
    warmup_steps = steps_per_epoch if warmup and epochs >= 3 else 0
    if warmup_steps:
        return keras.optimizers.schedules.CosineDecay(learning_rate / 10, decay_steps=total - warmup_steps,
                                                      alpha=0.01, warmup_target=learning_rate,
                                                      warmup_steps=warmup_steps)
    return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total, alpha=0.01)


def _extract(parts: RunParts) -> dict:
    from core.models.classifier import feature_extractor
    from core.models.extractors import LaterModel
    from core.models.features import cached_features, extract_features, feature_meta

    started, waited = time.perf_counter(), parts.build_waited_s
    parts.reporter.stage("features")
    key = parts.plan.feature_key
    was_cached = cached_features(parts.workspace, key) is not None
    # A model still being built is waited for only if Keras must compute the embeddings (LiteRT needs none of it).
    extractor = LaterModel(lambda: feature_extractor(parts.model)) if parts.model_pending \
        else feature_extractor(parts.model)
    features = extract_features(parts.workspace, key, extractor, parts.dataset,
                                image_size=parts.image_size, resize=parts.config.resize,
                                batch_size=parts.config.batch_size, reporter=parts.reporter,
                                meta={"backbone": parts.spec.name, "weights": parts.weights.description,
                                      "weights_fingerprint": parts.weights.fingerprint},
                                share=_worker_share(parts.strategy))
    # Waiting for a background build (Keras computed the embeddings) counts as building, not as the features.
    parts.timings["features_s"] = round(time.perf_counter() - started - (parts.build_waited_s - waited), 3)
    extraction = _extraction_facts(feature_meta(parts.workspace, key), was_cached)
    parts.timings.update(features_runtime=extraction["runtime"], conversion_s=extraction["conversion_s"])
    runs.update_run(parts.workspace, parts.run_id, feature_key=key, features_cached=was_cached,
                    extraction=extraction)
    if not was_cached:
        parts.reporter.plan(parts.work_plan())
    parts.features = {split: np.asarray(array) for split, array in features.items()}
    return parts.features


def _worker_share(strategy):
    """Across workers, this one's share of the embedding pass (each embeds every N-th image); else None."""
    if not is_multi_worker(strategy):
        return None
    from core.training.distributed_fit import worker_share

    return worker_share(strategy)


def _extraction_facts(meta: dict, was_cached: bool) -> dict:
    """Which runtime computed the embeddings, at what speed, and the conversion seconds this run paid; across
    workers, how many shared the pass and how many images this one embedded."""
    facts = {"runtime": meta.get("runtime", "keras"), "reason": meta.get("runtime_reason"),
             "images_per_s": meta.get("images_per_s"), "threads": meta.get("threads"),
             "conversion_s": 0.0 if was_cached else float(meta.get("conversion_s") or 0.0),
             "cached": was_cached}
    if meta.get("workers") and not was_cached:
        facts.update(workers=meta["workers"], worker_images=meta.get("worker_images"))
    return facts


def _selection_features(parts: RunParts):
    roles = parts.roles
    if not roles.selection_split:
        return None, None
    return (parts.features[roles.selection_split][roles.selection_index],
            parts.labels(roles.selection_split, roles.selection_index))


def fit_head_phase(parts: RunParts) -> Best:
    """Phase 1 on cached embeddings: a head chosen by cross-validation (or the Keras head when forced).

    When later choices use a holdout of ``train`` (no test split), the chosen head is still fit on every training
    image (the model handed over when fine-tuning does not win); the fine-tune phase starts from the same head
    refit without the holdout, and must get more holdout images right than that refit head does. Either way a
    fine-tune phase replaces the feature-extraction model only by at least ``HANDOVER_IMAGES`` more correct
    selection images, never by a lower loss alone, so fine-tuning that never wins hands over exactly the
    feature-extraction model.
    """
    features = _extract(parts)
    parts.reporter.stage("phase 1", phase_started_epoch=1)
    if parts.config.head == "keras":
        fit_x = features["train"][parts.roles.fit_index]
        return _fit_keras_head(parts, fit_x, parts.labels("train", parts.roles.fit_index))
    if parts.roles.selection_split == "train":
        everything = np.arange(len(features["train"]))
        best = _fit_chosen_head(parts, everything, score_by_cv=True)
        holdout_accuracy = _refit_head(parts, parts.roles.fit_index)
        # A fine-tune phase must beat the same head on the same holdout, by more images, not by a lower loss:
        # a tie hands over the feature-extraction model, the simpler one (the second 0.0 is no loss at all).
        return Best(score=(holdout_accuracy, 0.0), weights=best.weights, epoch=best.epoch,
                    margin=handover_margin(len(parts.roles.selection_index), holdout_accuracy))
    return _fit_chosen_head(parts, parts.roles.fit_index)


def _refit_head(parts: RunParts, index) -> float:
    """Refit the chosen head on the training images at ``index`` only (the start of a fine-tune phase);
    returns its accuracy on the selection holdout, which it has not seen."""
    from core.models.classifier import head_of
    from core.models.heads import fit_candidate, load_head_weights

    fitted = fit_candidate(parts.head_candidate, parts.features["train"][index], parts.labels("train", index),
                           parts.num_classes, seed=parts.config.seed)
    load_head_weights(head_of(parts.model), fitted)
    sel_x, sel_y = _selection_features(parts)
    return _metrics(fitted.predict_proba(sel_x), sel_y)["accuracy"]


def _fit_chosen_head(parts: RunParts, index, *, score_by_cv: bool = False) -> Best:
    from core.models.classifier import build_head, replace_head
    from core.models.heads import (
        candidate_from_dict,
        candidates_for,
        cross_validate,
        fit_candidate,
        load_head_weights,
    )

    started = time.perf_counter()
    fit_x, fit_y = parts.features["train"][index], parts.labels("train", index)
    groups = np.asarray(parts.dataset.content_groups("train"))[index]
    candidates = candidates_for(parts.config.head)
    try:
        results = cross_validate(candidates, fit_x, fit_y, groups, parts.num_classes, seed=parts.config.seed,
                                 should_stop=parts.reporter.stop_requested,
                                 on_candidate=lambda done, total: parts.reporter.batch(done, total))
    except StopIteration:
        from core.progress import StopRequested

        raise StopRequested() from None
    winner = candidate_from_dict(results[0]["candidate"])
    parts.head_candidate = winner
    fitted = fit_candidate(winner, fit_x, fit_y, parts.num_classes, seed=parts.config.seed)
    model = parts.model  # waits for a background build: Keras must not make two sets of layers at once
    with parts.strategy.scope():  # the new head's variables must belong to the run's strategy, as the model's do
        head = build_head(int(fit_x.shape[1]), parts.num_classes, dropout=parts.config.dropout,
                          hidden_units=fitted.hidden_units, seed=parts.config.seed)
        load_head_weights(head, fitted)
        parts.model = replace_head(model, head)
    selection = {"candidates": [{k: v for k, v in r.items() if k != "candidate"} for r in results],
                 "chosen": winner.name, "folds": results[0]["folds"], "fit_images": int(len(fit_y))}
    runs.update_run(parts.workspace, parts.run_id, head_selection=selection)
    record = {"epoch": 1, "phase": 1, "epoch_time": round(time.perf_counter() - started, 3),
              "learning_rate": None, "partial": False, "head": winner.name}
    record.update(_metrics(fitted.predict_proba(fit_x), fit_y))
    sel_x, sel_y = _selection_features(parts)
    if score_by_cv:  # the holdout is inside the images this head was fit on: its score is the CV estimate
        record.update(val_accuracy=results[0]["accuracy"], val_loss=None, val_is="cross-validation")
        parts.reporter.epoch(record)
        return Best(score=(results[0]["accuracy"], -1e9), weights=parts.model.get_weights(), epoch=1)
    val_x, val_y = (sel_x, sel_y) if sel_x is not None else (parts.features["val"], parts.labels("val"))
    val_metrics = _metrics(fitted.predict_proba(val_x), val_y)
    record.update(val_loss=val_metrics["loss"], val_accuracy=val_metrics["accuracy"])
    parts.reporter.epoch(record)
    score = (val_metrics["accuracy"], 0.0) if sel_x is not None else None  # beaten by more images only
    return Best(score=score, weights=parts.model.get_weights(), epoch=1,
                margin=handover_margin(len(sel_y), val_metrics["accuracy"]) if sel_x is not None else 0.0)


HANDOVER_IMAGES = 2


def handover_margin(selection_images: int, accuracy: float) -> float:
    """Accuracy a fine-tune epoch must add on the selection images to replace the feature-extraction model (whose
    ``accuracy`` on them is given): two standard errors of that accuracy, and at least ``HANDOVER_IMAGES`` images.

    A win inside the noise of a few dozen images is luck, measured: on hymenoptera (ImageNet-like photographs) phase
    2 won its 37-image holdout by one image, then by two, and each time got 2 fewer of the 153 headline images right.
    Where fine-tuning pays (sign_language_digits, +5 points on 412 selection images) it clears this by far.
    """
    n = max(selection_images, 1)
    return max((HANDOVER_IMAGES - 0.5) / n, 2.0 * float(np.sqrt(accuracy * (1.0 - accuracy) / n)))


def _metrics(probabilities, labels) -> dict:
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)
    labels = np.asarray(labels)
    return {"accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
            "loss": float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels])))}


def _fit_keras_head(parts: RunParts, fit_x, fit_y) -> Best:
    from core.models.classifier import head_of

    config = parts.config
    head = head_of(parts.model)
    steps = math.ceil(len(fit_y) / config.batch_size)
    parts.compile(head, learning_rate_schedule(config.effective_learning_rate, steps, config.epochs, warmup=False))
    train = tf.data.Dataset.from_tensor_slices((fit_x, fit_y)).shuffle(len(fit_y), seed=config.seed)
    sel_x, sel_y = _selection_features(parts)
    if is_multi_worker(parts.strategy):
        from core.training.distributed_fit import array_source, fit_across_workers

        return fit_across_workers(parts, head, train=array_source(fit_x, fit_y, training=True, seed=config.seed),
                                  val=array_source(sel_x, sel_y, training=False), phase=1, steps=steps,
                                  epochs=config.epochs, initial_epoch=0, best=None,
                                  validation_steps=math.ceil(len(sel_y) / config.batch_size))
    val = tf.data.Dataset.from_tensor_slices((sel_x, sel_y)).batch(config.batch_size)
    return _fit(parts, head, train.batch(config.batch_size), val, phase=1, steps=steps, epochs=config.epochs,
                initial_epoch=0, best=None, validation_steps=math.ceil(len(sel_y) / config.batch_size))


def fit_image_phase(parts: RunParts, *, phase: int, trainable: str, epochs: int, learning_rate: float,
                    augment: bool, top_layers: int = 0, best: Best | None = None) -> Best:
    """An image phase: ``frozen`` (head only, on augmented images), ``top`` (fine-tune) or ``all`` (scratch)."""
    from core.models.classifier import set_backbone_trainable
    from core.models.pipeline import build_augmentation, make_image_dataset

    config, roles = parts.config, parts.roles
    counts = set_backbone_trainable(parts.model, trainable, top_layers)
    backbone_changed = parts.backbone_changed
    parts.backbone_changed = parts.backbone_changed or trainable != "frozen"
    runs.update_run(parts.workspace, parts.run_id, **{f"phase{phase}_trainable": counts})
    steps = math.ceil(len(roles.fit_index) / config.batch_size)
    parts.compile(parts.model, learning_rate_schedule(learning_rate, steps, epochs, warmup=trainable != "frozen"))
    size, batch_size, resize = parts.image_size, config.batch_size, config.resize
    if is_multi_worker(parts.strategy):
        return _fit_images_across_workers(parts, phase=phase, epochs=epochs, steps=steps, augment=augment, best=best)
    train = make_image_dataset(parts.paths("train", roles.fit_index), parts.labels("train", roles.fit_index),
                               image_size=size, batch_size=batch_size, resize=resize, shuffle=True, seed=config.seed,
                               augment=build_augmentation(config.seed) if augment else None)
    val = make_image_dataset(parts.paths(roles.selection_split, roles.selection_index),
                             parts.labels(roles.selection_split, roles.selection_index), image_size=size,
                             batch_size=batch_size, resize=resize)
    initial_epoch = len(parts.reporter.history)
    parts.reporter.stage(f"phase {phase}", phase_started_epoch=initial_epoch + 1, epoch=initial_epoch + 1,
                         total_epochs=initial_epoch + epochs)
    kept = _fit(parts, parts.model, train, val, phase=phase, steps=steps, epochs=initial_epoch + epochs,
                initial_epoch=initial_epoch, best=best,
                validation_steps=math.ceil(len(roles.selection_index) / batch_size))
    if best is not None and kept is best:  # no epoch beat the earlier phase: its weights are back, backbone and all
        parts.backbone_changed = backbone_changed
    return kept


def _fit_images_across_workers(parts: RunParts, *, phase, epochs, steps, augment, best) -> Best:
    from core.training.distributed_fit import fit_across_workers, image_source

    roles = parts.roles
    initial_epoch = len(parts.reporter.history)
    parts.reporter.stage(f"phase {phase}", phase_started_epoch=initial_epoch + 1, epoch=initial_epoch + 1,
                         total_epochs=initial_epoch + epochs)
    return fit_across_workers(
        parts, parts.model, train=image_source(parts, "train", roles.fit_index, training=True, augment=augment),
        val=image_source(parts, roles.selection_split, roles.selection_index, training=False), phase=phase,
        steps=steps, epochs=initial_epoch + epochs, initial_epoch=initial_epoch, best=best,
        validation_steps=math.ceil(len(roles.selection_index) / parts.config.batch_size))


def _fit(parts: RunParts, model, train, val, *, phase, steps, epochs, initial_epoch, best, validation_steps):
    from core.progress import StopRequested

    callbacks, keeper = parts.callbacks(phase, steps, epochs, best, validation_steps)
    model.fit(train, validation_data=val, epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks,
              class_weight=parts.class_weight(), shuffle=False, verbose=0)  # the datasets shuffle
    if keeper.best.weights is None and parts.reporter.progress.get("stopped_by_user"):
        raise StopRequested()  # stopped in the first epoch of the run: no scored model to keep
    return keeper.best


class _StopPredicting(keras.callbacks.Callback):
    """Ends a ``predict`` pass between batches once Stop is requested."""

    def __init__(self, stop_requested):
        super().__init__()
        self.stop_requested = stop_requested

    def on_predict_batch_end(self, batch, logs=None):
        if self.stop_requested():
            self.model.stop_predicting = True


def _probabilities(parts: RunParts, split: str) -> np.ndarray | None:
    """Probabilities of the final model on one split (through the head on cached embeddings when valid);
    None when Stop cut the pass over the images short (or came before it)."""
    from core.models.classifier import head_of

    if parts.features is not None and not parts.backbone_changed:
        return np.asarray(head_of(parts.model).predict(parts.features[split], verbose=0,
                                                       batch_size=parts.config.batch_size))
    from core.models.pipeline import make_image_dataset

    stop_requested = parts.reporter.stop_requested
    if stop_requested():
        return None
    images = make_image_dataset(parts.paths(split), image_size=parts.image_size,
                                batch_size=parts.config.batch_size, resize=parts.config.resize)
    probabilities = np.asarray(parts.model.predict(images, verbose=0, callbacks=[_StopPredicting(stop_requested)]))
    return None if stop_requested() else probabilities


def headline_of(parts: RunParts) -> dict:
    """The saved model's accuracy on the headline split (with its 95% interval), on val, and for small data a
    cross-validated estimate of the chosen head over every image."""
    roles = parts.roles
    probabilities = _probabilities(parts, roles.headline)
    if probabilities is None:  # stopped: the model is saved, its accuracy is left to the Evaluate page
        return {"headline": None, "val_accuracy": None, "val_loss": None, "not_measured": True}
    headline = accuracy_with_interval(parts.labels(roles.headline), probabilities, roles.headline,
                                      method="held-out", selection=roles.selection_name)
    val_probabilities = probabilities if roles.headline == "val" else _probabilities(parts, "val")
    val = _metrics(val_probabilities, parts.labels("val")) if val_probabilities is not None else {}
    out = {"headline": headline, "val_accuracy": val.get("accuracy"), "val_loss": val.get("loss")}
    if headline["n"] < SMALL_HEADLINE and parts.features is not None and parts.config.head != "keras" \
            and parts.config.strategy == "feature-extraction" and not parts.config.augment:
        out["cv_estimate"] = _cross_validated_estimate(parts)
    return out


def _cross_validated_estimate(parts: RunParts) -> dict | None:
    """The chosen head recipe cross-validated over every image of the dataset (it chose nothing there)."""
    from core.models.heads import fit_candidate, fold_indices

    candidate = parts.head_candidate
    if candidate is None:
        return None
    splits = list(parts.dataset.splits)
    x = np.concatenate([parts.features[s] for s in splits])
    y = np.concatenate([parts.labels(s) for s in splits])
    groups = np.asarray(parts.dataset.content_groups(*splits))
    probabilities = np.zeros((len(y), parts.num_classes))
    folds = fold_indices(y, groups, seed=parts.config.seed)
    for train_index, test_index in folds:
        fitted = fit_candidate(candidate, x[train_index], y[train_index], parts.num_classes, seed=parts.config.seed)
        probabilities[test_index] = fitted.predict_proba(x[test_index])
    return accuracy_with_interval(y, probabilities, "all", method="cross-validation", folds=len(folds),
                                  head=candidate.name)
