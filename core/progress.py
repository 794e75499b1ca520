"""Live progress of a run: state written by the worker, read as snapshots by the UI.

State (``progress.json``, ``history.json``) is apart from control (the ``stop`` flag file), as in
the Hugging Face Trainer: the UI never reaches into a running job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from core.run_state import STARTING_STAGE, StopControl
from core.runs import stop_requested
from core.workspace import atomic_write_json

BATCH_WRITE_INTERVAL_S = 0.25
STOPPED_AT_KEYS = ("stage", "phase", "epoch", "batch", "of")
POSITION_FIELDS = ("batch", "of", "elapsed", "eta", "epoch", "total_epochs")


class StopRequested(Exception):
    """Raised between batches of work that is not a Keras fit (embedding extraction)."""


class RunReporter:
    """Writes a run's live position and history; checks the stop flag.

    Across workers (``share_stop``), Stop is a decision every worker takes at the same point: ``stop_requested``
    then answers what the workers last agreed, and only ``sync_stop`` (called by all of them at once) asks again.
    That decision is ``control`` (a ``StopControl``); ``progress`` and ``history`` are the state it writes.

    Args:
        folder: The run folder.
        on_epoch: Optional function called with each epoch record (the CLI prints a line).
    """

    def __init__(self, folder: Path, on_epoch=None):
        self.folder = Path(folder)
        self.on_epoch = on_epoch
        self.history: list[dict] = []
        self.progress: dict = {"stage": STARTING_STAGE, "started_at": time.time()}
        self._last_write = 0.0
        self._plan: list[tuple[str, float]] = []
        self.clock = time.time
        self.control = StopControl()

    def plan(self, stages: list[tuple[str, float]]) -> None:
        """Estimated seconds of each stage to come, in order; the ETA adds those after the current stage."""
        self._plan = [(name, float(seconds)) for name, seconds in stages]

    def seconds_after_stage(self) -> float:
        """Estimated seconds of the planned stages after the current one."""
        names = [name for name, _ in self._plan]
        current = self.progress.get("stage")
        start = names.index(current) + 1 if current in names else 0
        return sum(seconds for _, seconds in self._plan[start:])

    def stop_requested(self) -> bool:
        """Stop asked for: the flag file in one process; across workers, what they last agreed (no waiting)."""
        if not self.control.shared:
            return stop_requested(self.folder)
        return self.control.agreed

    def local_stop_requested(self) -> bool:
        """This process's own flag file (on a worker other than the chief, never set)."""
        return stop_requested(self.folder)

    def share_stop(self, agree) -> None:
        """Take Stop decisions together with the other workers: ``agree(flag)`` is True on every worker when
        ``flag`` is True on any of them (a collective: every worker must call it at the same point)."""
        self.control.agree = agree

    @property
    def shares_stop(self) -> bool:
        return self.control.shared

    def any_worker(self, flag: bool) -> bool:
        """``flag`` of any worker (a collective across workers; ``flag`` itself in one process)."""
        return bool(self.control.agree(bool(flag))) if self.control.shared else bool(flag)

    def sync_stop(self) -> bool:
        """A point where every worker asks for Stop at once (a collective); in one process only a look at the
        flag file, changing nothing. Once the workers agree on Stop the run is marked stopped here."""
        if not self.control.shared:
            return stop_requested(self.folder)
        if not self.control.agreed and self.control.agree(self.local_stop_requested()):
            self.agree_stop()
        return self.control.agreed

    def agree_stop(self, **where) -> None:
        """The workers agreed on Stop (in a collective of their own, such as a training step's) ``where``."""
        self.control.agreed = True
        self.mark_stopped(**where)

    def mark_stopped(self, **where) -> None:
        """Record that Stop ended the run, and where: the current position, or ``where`` (kept from the first)."""
        if not self.progress.get("stopped_by_user"):
            self.progress["stopped_by_user"] = True
            here = {key: self.progress[key] for key in STOPPED_AT_KEYS if key in self.progress}
            self.progress["stopped_at"] = {**here, **where}

    def stage(self, stage: str, **fields) -> None:
        """Enter a stage (``loading``, ``features``, ``phase 1``, ``phase 2``, ``saving``).

        The position within the stage before (batch, of, ETA) is dropped, so until the new stage reports its
        first batch nobody reads the last one's "batch 12 of 12" as this one's.
        """
        kept = {key: value for key, value in self.progress.items() if key not in POSITION_FIELDS}
        self.progress = {**kept, "stage": stage, "stage_started_at": time.time(), **fields}
        self._write(force=True)

    def batch(self, batch: int, of: int, *, stage_left: float | None = None, **fields) -> None:
        """Record the position within the current stage (written at most 4 times a second).

        Args:
            batch: Units done in the current stage (or epoch).
            of: Units in it.
            stage_left: Seconds left in the current stage, when the caller knows better than a straight line
                through the units done so far (an epoch of a multi-epoch phase).
        """
        started = self.progress.get("stage_started_at", self.clock())
        elapsed = self.clock() - started
        if stage_left is None and batch and of:
            stage_left = elapsed / batch * (of - batch)
        eta = None if stage_left is None else stage_left + self.seconds_after_stage()
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

    The ETA covers the whole run: what is left of this epoch (its batches at this epoch's measured pace, and its
    validation pass), the phase's later epochs (at the measured time of whole epochs, validation included), and
    the reporter's estimates of the stages after this phase.

    Args:
        reporter: Where to record progress.
        phase: Phase number written into each epoch record (1, or 2 for fine-tuning).
        steps: Batches per epoch.
        total_epochs: Last epoch number of this phase.
        validation_steps: Batches of the validation pass after each epoch.
    """

    def __init__(self, reporter: RunReporter, *, phase: int, steps: int, total_epochs: int,
                 validation_steps: int = 0):
        super().__init__()
        self.reporter = reporter
        self.phase = phase
        self.steps = steps
        self.total_epochs = total_epochs
        self.validation_steps = validation_steps
        self.stopped_by_user = False
        self._epoch_start = 0.0
        self._epoch = 0
        self._epoch_times: list[float] = []
        self._train_times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = self.reporter.clock()

    def seconds_left(self, batches_done: int) -> float:
        """Seconds left in this phase after ``batches_done`` batches of the current epoch."""
        elapsed = self.reporter.clock() - self._epoch_start
        per_batch = elapsed / max(batches_done, 1)
        if self._epoch_times:
            validation = max(0.0, np.mean(self._epoch_times) - np.mean(self._train_times))
            per_epoch = float(np.mean(self._epoch_times))
        else:
            validation = per_batch * self.validation_steps / 3.0  # a forward pass costs about a third of a step
            per_epoch = per_batch * self.steps + validation
        later_epochs = max(0, self.total_epochs - (self._epoch + 1))
        return (self.steps - batches_done) * per_batch + validation + later_epochs * per_epoch

    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1
        if done == self.steps:
            self._train_times.append(self.reporter.clock() - self._epoch_start)
        self.reporter.batch(done, self.steps, stage_left=self.seconds_left(done), epoch=self._epoch + 1,
                            total_epochs=self.total_epochs, phase=self.phase)
        self._check_stop()

    def on_test_begin(self, logs=None):
        if self.stopped_by_user:  # Keras still validates a cut epoch: one batch, then it breaks off
            self.model.stop_evaluating = True

    def on_test_batch_end(self, batch, logs=None):
        self._check_stop()

    def _check_stop(self) -> None:
        """Stop between batches: no more training batches, and what is left of the validation pass skipped."""
        if self.stopped_by_user or self.reporter.stop_requested():
            self.stopped_by_user = True
            self.reporter.mark_stopped()
            self.model.stop_training = True
            self.model.stop_evaluating = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self._epoch_times.append(self.reporter.clock() - self._epoch_start)
        record = {
            "epoch": epoch + 1,
            "phase": self.phase,
            "epoch_time": round(self._epoch_times[-1], 3),
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "partial": self.stopped_by_user,
        }
        keys = ("loss", "accuracy") if self.stopped_by_user else ("loss", "accuracy", "val_loss", "val_accuracy")
        for key in keys:  # a cut epoch's validation covered a batch or none: it scores nothing
            if key in logs:
                record[key] = float(logs[key])
        self.reporter.epoch(record)


@dataclass
class Best:
    """The best model seen so far: its score on the selection images and its weights (of the full model)."""

    score: tuple[float, float] | None
    weights: list | None
    epoch: int | None = None
    margin: float = 0.0  # accuracy a later epoch must add to replace it (the feature-extraction model's handover)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the best validation accuracy (lower val_loss breaks ties) and restores them
    at the end, whether training ended normally, early or by Stop.

    Args:
        best: The best of earlier phases (score and weights); this phase must beat its score to replace it, and
            when it never does, those weights are restored.
        target: The model whose weights are kept (the full model, also when ``fit`` trains only its head).
        cut_short: Optional callable; True when the epoch ending was cut short by Stop (its validation skipped),
            so its score does not count.
    """

    def __init__(self, best: Best | None = None, target=None, cut_short=None):
        super().__init__()
        self.best = best or Best(score=None, weights=None)
        self.target = target
        self.cut_short = cut_short

    def _kept_model(self):
        return self.target if self.target is not None else self.model

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if "val_accuracy" not in logs or (self.cut_short is not None and self.cut_short()):
            return
        score = (float(logs["val_accuracy"]), -float(logs.get("val_loss", 0.0)))
        if self.best.score is None or score > (self.best.score[0] + self.best.margin, self.best.score[1]):
            self.best = Best(score=score, weights=self._kept_model().get_weights(), epoch=epoch + 1)

    def on_train_end(self, logs=None):
        if self.best.weights is not None:
            self._kept_model().set_weights(self.best.weights)

    @property
    def best_epoch(self) -> int | None:
        return self.best.epoch


def check_stop(reporter) -> None:
    """Between two steps of a job: when Stop was pressed, record where and raise ``StopRequested`` (no reporter:
    nothing to ask)."""
    if reporter is not None and reporter.stop_requested():
        reporter.mark_stopped()
        raise StopRequested()


def run_job(workspace, job_id: str, work, *, stopped: str, interrupted: str, mark_stopped: bool = False) -> dict:
    """Run a job other than training (health check, export, speed, embedding map) in this process and record how
    it ended; returns the final run record.

    Args:
        workspace: Where the job's record is.
        job_id: Its id in the run store.
        work: ``work(folder, reporter) -> dict`` does the job; what it returns is added to the final record.
        stopped: The record's message when Stop ended it; ``interrupted``: when the server shut down.
        mark_stopped: Record where Stop came (``RunReporter.mark_stopped``).
    """
    import os
    import traceback

    from core import runs
    from core.errors import StudioError
    from core.processes import Interrupted, process_start_time
    from core.run_state import RunStatus

    folder = runs.run_dir(workspace, job_id)
    reporter = RunReporter(folder)
    runs.update_run(workspace, job_id, status=RunStatus.RUNNING, pid=os.getpid(),
                    pid_started=process_start_time(os.getpid()), started_at=time.time(), error=None)
    started = time.perf_counter()
    try:
        final = {"status": RunStatus.DONE, "error": None, **(work(folder, reporter) or {})}
    except StopRequested:
        if mark_stopped:
            reporter.mark_stopped()
        final = {"status": RunStatus.STOPPED, "error": stopped}
    except Interrupted:
        final = {"status": RunStatus.INTERRUPTED, "error": interrupted}
    except StudioError as exc:
        final = {"status": RunStatus.FAILED, "error": str(exc)}
    except Exception as exc:  # a bug or an environment fault: record it with its traceback
        final = {"status": RunStatus.FAILED, "error": f"{type(exc).__name__}: {exc}",
                 "error_details": traceback.format_exc()}
    reporter.stage("finished")
    return runs.update_run(workspace, job_id, finished_at=time.time(),
                           timings={"total_s": round(time.perf_counter() - started, 3)}, **final)
