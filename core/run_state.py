"""A run's state and its stop control as small types, as Hugging Face's ``TrainerState`` and ``TrainerControl``.

State is what the worker writes and everyone else only reads: the record (``run.json``), the epochs
(``history.json``) and the live position (``progress.json``); a ``RunSnapshot`` is one read-only look at the three.
Control is how Stop is decided (``StopControl``, held by ``core.progress.RunReporter``). The JSON on disk is the
contract: these types read it as it is and write nothing of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from core.workspace import read_json


class RunStatus(StrEnum):
    """Where a run (or health job) is in its life; the value is what ``run.json`` holds under ``status``."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINAL_STATUSES = (RunStatus.DONE, RunStatus.STOPPED, RunStatus.FAILED, RunStatus.INTERRUPTED)
# Ended with a result worth keeping: a stopped run keeps the best model seen before Stop.
RESULT_STATUSES = (RunStatus.DONE, RunStatus.STOPPED)
STARTING_STAGE = "starting"  # the stage of a run whose worker has not reported one yet
RUN_FILES = ("run.json", "progress.json", "history.json")


def as_status(value) -> RunStatus | None:
    """``value`` (a status string from disk) as a RunStatus; None when it names none."""
    try:
        return RunStatus(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class RunSnapshot:
    """One look at a run: its record, live progress and epoch history, as the JSON files hold them.

    Shared read-only (the app hands one snapshot to every tab watching the run): read it, never change it.
    """

    record: dict
    progress: dict = field(default_factory=dict)
    history: list = field(default_factory=list)

    @classmethod
    def read(cls, folder: Path) -> RunSnapshot | None:
        """The run in ``folder`` now; None when it has no readable ``run.json`` (gone, or never made)."""
        record, progress, history = (read_json(Path(folder) / name) for name in RUN_FILES)
        return None if record is None else cls(record, progress or {}, history or [])

    @classmethod
    def from_dict(cls, data: dict) -> RunSnapshot:
        """From ``{"record", "progress", "history"}`` (the loose dict pages used to pass around)."""
        return cls(data["record"], data.get("progress") or {}, data.get("history") or [])

    def to_dict(self) -> dict:
        return {"record": self.record, "progress": self.progress, "history": self.history}

    @property
    def run_id(self) -> str | None:
        return self.record.get("run_id")

    @property
    def kind(self) -> str:
        return self.record.get("kind", "train")

    @property
    def status(self) -> RunStatus | None:
        """The record's status (None for a status this version does not know)."""
        return as_status(self.record.get("status"))

    @property
    def is_active(self) -> bool:
        """Queued or training: the page polls it and offers Stop."""
        return self.status in ACTIVE_STATUSES

    @property
    def has_result(self) -> bool:
        """Done, or stopped with the best model so far kept."""
        return self.status in RESULT_STATUSES

    @property
    def error(self) -> str | None:
        return self.record.get("error")

    @property
    def error_details(self) -> str | None:
        return self.record.get("error_details")

    @property
    def stage(self) -> str:
        """``starting``, ``loading``, ``features``, ``phase 1``, ``phase 2``, ``saving``, ``finished``..."""
        return self.progress.get("stage") or STARTING_STAGE

    @property
    def in_phase(self) -> bool:
        """In a training phase (``phase 1``, ``phase 2``), where the position counts epochs too."""
        return self.stage.startswith("phase")

    @property
    def batch(self) -> int | None:
        """Units done in the current stage (batches, or images while computing features)."""
        return self.progress.get("batch")

    @property
    def of(self) -> int | None:
        return self.progress.get("of")

    @property
    def fraction(self) -> float | None:
        """``batch / of`` (at most 1), None before the stage reports its first unit."""
        return min(self.batch / self.of, 1.0) if self.batch and self.of else None

    @property
    def epoch(self) -> int | None:
        return self.progress.get("epoch")

    @property
    def total_epochs(self) -> int | None:
        return self.progress.get("total_epochs")

    @property
    def eta(self) -> float | None:
        """Estimated seconds left of the whole run (None while not known)."""
        return self.progress.get("eta")

    @property
    def stopped_by_user(self) -> bool:
        return bool(self.progress.get("stopped_by_user"))

    @property
    def stopped_at(self) -> dict | None:
        """Where Stop ended the run: the record's (once it ended), else the worker's live one."""
        return self.record.get("stopped_at") or self.progress.get("stopped_at")

    @property
    def last_epoch(self) -> dict | None:
        return self.history[-1] if self.history else None


@dataclass
class StopControl:
    """How a run decides Stop (the control, apart from the state; ``TrainerControl`` in Hugging Face).

    In one process Stop is the run folder's flag file. Across workers it is a decision every worker takes at the
    same point: ``agree(flag)`` is a collective, True on every worker when ``flag`` is True on any of them, and
    ``agreed`` is what they last agreed.
    """

    agree: Callable[[bool], bool] | None = None
    agreed: bool = False

    @property
    def shared(self) -> bool:
        """True when Stop is decided together with other workers."""
        return self.agree is not None
