"""Stop ends a run within a bounded number of batches at every stage, and keeps the best weights it had."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from core import runs
from core.config import TrainConfig
from core.progress import BestWeights, RunReporter
from core.training.phases import RunParts, _StopPredicting
from core.training.trainer import STOPPED_UNMEASURED, execute_run
from tests.factories import make_tiny_dataset


@pytest.fixture
def tiny(workspace, tmp_path):
    return make_tiny_dataset(workspace, tmp_path)


def _run(workspace, dataset, **overrides) -> str:
    values = {"dataset_id": dataset.id, "backbone": "mobilenet_v2", "image_size": 96, "weights": "none",
              "batch_size": 2, "early_stopping_patience": 0, "epochs": 1}
    values.update(overrides)
    config = TrainConfig(**values)
    return runs.create_run(workspace, config, classes=dataset.classes, status="running")


class BatchCounter(keras.callbacks.Callback):
    """Counts the batches Keras runs after Stop was requested; requests it at a chosen training batch."""

    def __init__(self, request, phase: int, counts: dict, at_epoch: int, at_batch: int):
        super().__init__()
        self.request, self.phase, self.counts = request, phase, counts
        self.at_epoch, self.at_batch, self.epoch = at_epoch, at_batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.counts["requested"]:
            self.counts["train"] += 1
        elif self.phase == 2 and self.counts["phase2_epochs_seen"](self.epoch) == self.at_epoch \
                and batch + 1 == self.at_batch:
            self.counts["requested"] = True
            self.request()

    def on_test_batch_end(self, batch, logs=None):
        if self.counts["requested"]:
            self.counts["test"] += 1


def test_stop_in_fine_tuning_ends_within_one_batch_and_saves_the_best_weights(workspace, tiny, monkeypatch):
    run_id = _run(workspace, tiny, strategy="fine-tune", fine_tune_epochs=50, fine_tune_layers=4)
    counts = {"requested": False, "train": 0, "test": 0, "predict": 0}
    first_phase2_epoch = {}
    counts["phase2_epochs_seen"] = lambda epoch: epoch - first_phase2_epoch.setdefault("epoch", epoch) + 1
    original_callbacks = RunParts.callbacks

    def with_counter(self, phase, steps, last_epoch, best, validation_steps):
        callbacks, keeper = original_callbacks(self, phase, steps, last_epoch, best, validation_steps)
        counter = BatchCounter(lambda: runs.request_stop(workspace, run_id), phase, counts, at_epoch=1, at_batch=2)
        return [counter, *callbacks], keeper

    kept = {}
    original_end = BestWeights.on_train_end

    def remember_best(self, logs=None):
        kept["weights"] = self.best.weights
        original_end(self, logs)

    original_predict_end = _StopPredicting.on_predict_batch_end

    def count_predict(self, batch, logs=None):
        counts["predict"] += 1
        original_predict_end(self, batch, logs)

    monkeypatch.setattr(RunParts, "callbacks", with_counter)
    monkeypatch.setattr(BestWeights, "on_train_end", remember_best)
    monkeypatch.setattr(_StopPredicting, "on_predict_batch_end", count_predict)
    record = execute_run(workspace, run_id)

    assert counts["requested"]
    assert record["status"] == "stopped", record.get("error")
    assert counts["train"] == 0  # not one more training batch after the request
    assert counts["test"] <= 1  # Keras validates a cut epoch with one batch before it breaks off
    assert counts["predict"] == 0  # no pass over the images to measure the headline after a stop
    history = runs.load_history(workspace, run_id)
    assert history[-1]["partial"] and "val_accuracy" not in history[-1]
    saved = runs.load_run_model(workspace, run_id)
    for saved_array, best_array in zip(saved.get_weights(), kept["weights"], strict=True):
        np.testing.assert_array_equal(saved_array, best_array)
    assert record["best_epoch"] == 1  # the head of phase 1: the cut epoch scored nothing
    assert record["headline"] is not None  # measured on the cached features, which that head model still fits
    where = record["stopped_at"]
    assert (where["stage"], where["phase"], where["batch"]) == ("phase 2", 2, 2), where


def test_stop_while_computing_features_ends_at_the_next_batch(workspace, tiny, monkeypatch):
    run_id = _run(workspace, tiny)
    batches_after = {"requested": False, "count": 0}
    original_batch = RunReporter.batch

    def request_at_first_batch(self, batch, of, **fields):
        if self.progress.get("stage") == "features":
            if batches_after["requested"]:
                batches_after["count"] += 1
            else:
                batches_after["requested"] = True
                runs.request_stop(workspace, run_id)
        original_batch(self, batch, of, **fields)

    monkeypatch.setattr(RunReporter, "batch", request_at_first_batch)
    record = execute_run(workspace, run_id)
    assert batches_after["requested"]
    assert record["status"] == "stopped"
    assert batches_after["count"] == 0
    assert not runs.model_path(workspace, run_id).exists()
    assert record["stopped_at"]["stage"] == "features" and record["stopped_at"]["batch"] == 2, record["stopped_at"]


def test_stop_while_measuring_the_headline_keeps_the_saved_model(workspace, tiny, monkeypatch):
    run_id = _run(workspace, tiny, augment=True, batch_size=8)  # frozen backbone, images through the model
    original_stage = RunReporter.stage

    def request_when_evaluating(self, stage, **fields):
        if stage == "evaluating":
            runs.request_stop(workspace, run_id)
        original_stage(self, stage, **fields)

    monkeypatch.setattr(RunReporter, "stage", request_when_evaluating)
    record = execute_run(workspace, run_id)
    assert record["status"] == "stopped"
    assert record["error"] == STOPPED_UNMEASURED
    assert record["headline"] is None
    assert runs.model_path(workspace, run_id).exists()


def test_stop_between_the_phases_keeps_phase_one_and_never_starts_fine_tuning(workspace, tiny, monkeypatch):
    import core.training.phases

    run_id = _run(workspace, tiny, strategy="fine-tune", fine_tune_epochs=50, fine_tune_layers=4)
    original = core.training.phases.fit_head_phase
    kept = {}

    def phase_one_then_stop(parts):
        kept["best"] = original(parts)
        runs.request_stop(workspace, run_id)  # pressed while phase 2 is being set up
        return kept["best"]

    monkeypatch.setattr(core.training.phases, "fit_head_phase", phase_one_then_stop)
    record = execute_run(workspace, run_id)
    assert record["status"] == "stopped", record.get("error")
    assert "phase2_trainable" not in record  # fine-tuning was never set up
    assert all(epoch["phase"] == 1 for epoch in runs.load_history(workspace, run_id))
    saved = runs.load_run_model(workspace, run_id)
    for saved_array, best_array in zip(saved.get_weights(), kept["best"].weights, strict=True):
        np.testing.assert_array_equal(saved_array, best_array)
