"""Live progress of a run: state written by the worker, read as snapshots by the UI.

State (``progress.json``, ``history.json``) is apart from control (the ``stop`` flag file), as in
the Hugging Face Trainer: the UI never reaches into a running job.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras

from core.runs import stop_requested
from core.workspace import atomic_write_json

BATCH_WRITE_INTERVAL_S = 0.25


class StopRequested(Exception):
    """Raised between batches of work that is not a Keras fit (embedding extraction)."""


class RunReporter:
    """Writes a run's live position and history; checks the stop flag.

    Args:
        folder: The run folder.
        on_epoch: Optional function called with each epoch record (the CLI prints a line).
    """

    def __init__(self, folder: Path, on_epoch=None):
        self.folder = Path(folder)
        self.on_epoch = on_epoch
        self.history: list[dict] = []
        self.progress: dict = {"stage": "starting", "started_at": time.time()}
        self._last_write = 0.0

    def stop_requested(self) -> bool:
        return stop_requested(self.folder)

    def stage(self, stage: str, **fields) -> None:
        """Enter a stage (``loading``, ``features``, ``phase 1``, ``phase 2``, ``saving``)."""
        self.progress = {**self.progress, "stage": stage, "stage_started_at": time.time(), **fields}
        self._write(force=True)

    def batch(self, batch: int, of: int, **fields) -> None:
        """Record the position within the current stage (written at most 4 times a second)."""
        started = self.progress.get("stage_started_at", time.time())
        elapsed = time.time() - started
        eta = elapsed / batch * (of - batch) if batch and of else None
        self.progress.update(batch=batch, of=of, elapsed=elapsed, eta=eta, **fields)
        self._write(force=batch >= of)

    def epoch(self, record: dict) -> None:
        """Append one epoch record to the history (written at once)."""
        self.history.append(record)
        atomic_write_json(self.folder / "history.json", self.history)
        self.progress.update(epoch=record["epoch"], last_epoch=record)
        self._write(force=True)
        if self.on_epoch:
            self.on_epoch(record)

    def _write(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self._last_write >= BATCH_WRITE_INTERVAL_S:
            self.progress["updated_at"] = now
            atomic_write_json(self.folder / "progress.json", self.progress)
            self._last_write = now


class ProgressCallback(keras.callbacks.Callback):
    """Feeds a RunReporter from ``fit``: per batch position and ETA, per epoch metrics; honours Stop.

    Args:
        reporter: Where to record progress.
        phase: Phase number written into each epoch record (1, or 2 for fine-tuning).
        steps: Batches per epoch.
        total_epochs: Last epoch number of this phase (for the ETA over the phase).
    """

    def __init__(self, reporter: RunReporter, *, phase: int, steps: int, total_epochs: int):
        super().__init__()
        self.reporter = reporter
        self.phase = phase
        self.steps = steps
        self.total_epochs = total_epochs
        self.stopped_by_user = False
        self._epoch_start = 0.0
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self.reporter.batch(batch + 1, self.steps, epoch=self._epoch + 1, total_epochs=self.total_epochs,
                            phase=self.phase)
        if self.reporter.stop_requested():
            self.stopped_by_user = True
            self.reporter.progress["stopped_by_user"] = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        record = {
            "epoch": epoch + 1,
            "phase": self.phase,
            "epoch_time": round(time.time() - self._epoch_start, 3),
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "partial": self.stopped_by_user,
        }
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                record[key] = float(logs[key])
        self.reporter.epoch(record)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the best validation accuracy (lower val_loss breaks ties) and restores them
    at the end, whether training ended normally, early or by Stop.

    Args:
        best: Score to beat, carried over from an earlier phase as (val_accuracy, -val_loss).
    """

    def __init__(self, best: tuple[float, float] | None = None):
        super().__init__()
        self.best = best
        self.best_weights = None
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if "val_accuracy" not in logs:
            return
        score = (float(logs["val_accuracy"]), -float(logs.get("val_loss", 0.0)))
        if self.best is None or score > self.best:
            self.best = score
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch + 1

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
