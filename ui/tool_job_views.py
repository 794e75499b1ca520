"""Export, speed and map jobs in the app: start one, watch it live (with Stop), say how the last one ended.

The same pattern as the health check (``ui/health_views.py``): a page finds the job on disk, so it survives a
refresh; only an active job registers a polling fragment, which reruns the whole page once the job ends, and the
page then shows the result the job wrote.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core import runs
from core.errors import StudioError
from core.run_state import RunStatus
from core.tool_jobs import ACTIVE, latest_job, submit_tool_job
from ui.jobs import format_seconds, get_manager, snapshot
from ui.text import escape_markdown

POLL_S = 1.0
ENDED = (RunStatus.FAILED, RunStatus.STOPPED, RunStatus.INTERRUPTED)
Describe = Callable[[dict], tuple[float | None, str]]  # progress.json -> (fraction done or None, what it does)


def start_button(config, label: str, *, key: str, container=None, **button) -> None:
    """A button (in ``container``) that queues the tool job ``config`` and reruns the page to watch it; a refusal
    is shown as the error's one line."""
    place = container or st
    if not place.button(label, key=key, **button):
        return
    try:
        submit_tool_job(get_manager(), config)
    except StudioError as exc:
        st.error(escape_markdown(exc))
        return
    st.rerun()


def live_job(job_id: str, describe: Describe, *, what: str) -> None:
    """Progress and Stop of one active tool job, polled every second (a fragment only while it is active)."""
    st.fragment(_live_job, run_every=POLL_S)(job_id, describe, what)


def _live_job(job_id: str, describe: Describe, what: str) -> None:
    snap = snapshot(job_id)
    if snap is None:
        return
    if not snap.is_active:
        st.rerun(scope="app")  # the page draws the result (or why there is none)
    if snap.status == RunStatus.QUEUED:
        st.info(f"The {what} waits in the server's queue (a training run or another job goes first).")
    else:
        fraction, text = describe(snap.progress)
        st.progress(min(max(fraction or 0.0, 0.0), 1.0), text=text)
    stopping = runs.stop_requested(runs.run_dir(get_manager().workspace, job_id))
    if st.button("Stopping…" if stopping else "Stop", key=f"stop_{job_id}", disabled=stopping):
        get_manager().stop(job_id)
        st.toast(f"Stop requested: the {what} ends after its current step.")


def show_ending(record: dict | None, *, what: str) -> None:
    """Say why ``record`` (the newest job of its kind here) did not finish, when it did not."""
    if record is None or record.get("status") not in ENDED:
        return
    message = escape_markdown(record.get("error") or "")
    if record["status"] == RunStatus.FAILED:
        st.error(message)
    else:
        st.warning(f"The last {what} {record['status']}: {message}")


def counted(progress: dict, label: str, unit: str) -> tuple[float | None, str]:
    """``label: 12 of 40 <unit>, ETA …`` with the fraction done, or ``label…`` before the first count."""
    batch, of = progress.get("batch"), progress.get("of")
    if not (batch and of):
        return None, f"{label}…"
    eta = progress.get("eta")
    tail = f", ETA {format_seconds(eta)}" if eta is not None else ""
    return batch / of, f"{label}: {batch} of {of} {unit}{tail}"


SPEED_STAGES = {"starting": "Starting", "preparing": "Building the model (and converting it when the run would "
                "use LiteRT)", "timing": "Timing batches of this dataset's images"}


def describe_speed(progress: dict) -> tuple[float | None, str]:
    stage = progress.get("stage", "starting")
    if stage == "timing":
        return counted(progress, SPEED_STAGES["timing"], "batches")
    return None, f"{SPEED_STAGES.get(stage, stage)}…"


def measure_speed_control(workspace, config, *, container) -> None:
    """*Measure speed* as a job in ``container``: its progress while it runs, else the button (and why the last
    measurement of these settings did not finish)."""
    record = latest_job(workspace, config)
    with container:
        if record is not None and record.get("status") in ACTIVE:
            live_job(record["run_id"], describe_speed, what="speed measurement")
            return
        show_ending(record, what="speed measurement")
        start_button(config, "Measure speed", key="measure_speed")
