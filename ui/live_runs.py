"""A run as the tabs watching it see it: read and built once per change, for every session of the server.

Thirty tabs watching one training run poll it thirty times a second. Each poll asks "has anything changed?" of
the stamps of the run's files (``os.stat``); only a file whose stamp changed is read and parsed again, once for
the whole server, and only a changed history (or record) rebuilds the curves. Their points are turned into
Arrow bytes then, which Streamlit sends as they are; a spec with inline points would be turned into a DataFrame
and Arrow in every tab on every poll. Snapshots and specs are shared by every session and never mutated.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st
from streamlit import dataframe_util

from core.run_state import RUN_FILES, RunSnapshot
from core.training.continuation import accuracy_before
from core.workspace import read_json
from ui.charts import live_curves_spec

CURVES_DATASET = "curves"
MAX_FILES = 600  # parsed files kept (three per run watched); the least recently looked at go first
MAX_CURVES = 200


def file_stamp(path: Path) -> tuple | None:
    """``(mtime, inode, size)`` of a file, None when it is missing; run files are replaced atomically, so a new
    version has a new inode even within one mtime tick."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_ino, stat.st_size


@dataclass(frozen=True)
class LiveRun(RunSnapshot):
    """One look at a run (the core snapshot), with where it was read and the stamps of its files.

    Shared by every session that looked at the same files: read it, never change it.
    """

    folder: Path | None = None
    stamps: tuple = ()  # of RUN_FILES


def with_arrow_points(spec: dict) -> dict:
    """``spec`` with its inline points as one named Arrow dataset (``data.values`` of ``live_curves_spec``)."""
    frame = pd.DataFrame(spec["data"]["values"], columns=["epoch", "series", "value"])
    return {**spec, "data": {"name": CURVES_DATASET},
            "datasets": {CURVES_DATASET: dataframe_util.convert_anything_to_arrow_bytes(frame)}}


class LiveRuns:
    """Stamp-checked reads of run files and curves built once per change, for every session of the server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one reader parses a changed file; the others wait and take its result
        self._files: OrderedDict[str, tuple] = OrderedDict()  # path -> (stamp, parsed content)
        self._curves: OrderedDict[tuple, tuple] = OrderedDict()  # (folder, full range) -> (stamps, specs)
        self.reads: Counter = Counter()  # file name -> times read and parsed (tests and benches count them)
        self.builds = 0  # curve pairs built

    def look(self, folder: Path) -> LiveRun | None:
        """The run in ``folder`` now (None when it is gone); files unchanged since any session's last look are not
        read again."""
        with self._lock:
            (record_stamp, record), (progress_stamp, progress), (history_stamp, history) = (
                self._read(Path(folder) / name) for name in RUN_FILES)
        if record is None:
            return None
        return LiveRun(record, progress or {}, history or [], folder=Path(folder),
                       stamps=(record_stamp, progress_stamp, history_stamp))

    def curves(self, run: LiveRun, *, full_range: bool = False) -> tuple[dict, dict] | None:
        """Loss and accuracy specs of ``run`` (Arrow points), built once per change of its history or record."""
        if not run.history:
            return None
        slot, stamps = (str(run.folder), full_range), (run.stamps[0], run.stamps[2])
        with self._lock:
            cached = self._curves.get(slot)
            if cached is not None and cached[0] == stamps:
                self._curves.move_to_end(slot)
                return cached[1]
            before = accuracy_before(run.record)
            specs = (with_arrow_points(live_curves_spec(run.history, "loss", full_range=full_range)),
                     with_arrow_points(live_curves_spec(run.history, "accuracy", before=before,
                                                        full_range=full_range)))
            self.builds += 1
            self._keep(self._curves, slot, (stamps, specs), MAX_CURVES)
        return specs

    def _read(self, path: Path) -> tuple:
        key, stamp = str(path), file_stamp(path)
        cached = self._files.get(key)
        if cached is not None and cached[0] == stamp:
            self._files.move_to_end(key)
            return cached
        # Replaced between the stat and the read: the newer content is stored under the older stamp, and the
        # next look sees a new stamp and reads again.
        entry = (stamp, None if stamp is None else read_json(path))
        self.reads[path.name] += 1
        self._keep(self._files, key, entry, MAX_FILES)
        return entry

    @staticmethod
    def _keep(cache: OrderedDict, key, value, limit: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)


@st.cache_resource
def live_runs() -> LiveRuns:
    """The server's one LiveRuns: every session watching a run shares its reads and curves."""
    return LiveRuns()
