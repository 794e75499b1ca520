"""The data health check in the app: start it as a job, watch it, summarise it (Data), review it (Explore)."""

from __future__ import annotations

import streamlit as st

from core.data.datasets import Dataset
from core.data.versions import create_version
from core.errors import StudioError
from core.health_jobs import HealthConfig, family_report, latest_health_job, submit_health_check
from core.run_state import ACTIVE_STATUSES, STARTING_STAGE, RunStatus
from ui.jobs import format_seconds, get_manager, snapshot
from ui.state import set_dataset_id
from ui.text import escape_markdown

REVIEW_ROWS = 12
GROUPS_SHOWN = 8
NOTICE = "explore_notice"
STAGES = {"features": "Computing image features (once per dataset and backbone)", "checking": "Checking labels "
          "and duplicates", "loading": "Loading", STARTING_STAGE: "Starting"}


def start_button(dataset: Dataset, label: str, *, key: str, backbone: str = "mobilenet_v2",
                 image_size: int | None = None) -> None:
    """A button that queues a health job (embeddings and report) for ``dataset``."""
    if not st.button(label, key=key):
        return
    try:
        submit_health_check(get_manager(), HealthConfig(dataset.id, backbone, image_size))
    except StudioError as exc:
        st.error(escape_markdown(exc))
        return
    st.rerun()


def active_job(workspace, dataset: Dataset) -> dict | None:
    """The queued or running health job of ``dataset``, if any (found on disk: it survives a refresh)."""
    record = latest_health_job(workspace, dataset.id)
    return record if record and record.get("status") in ACTIVE_STATUSES else None


def live_job(job_id: str) -> None:
    """Progress and Stop of one active health job, polled every second (made a fragment only when called, so
    no page registers a poller while nothing runs, as the live run view does)."""
    st.fragment(_live_job, run_every=1.0)(job_id)


def _live_job(job_id: str) -> None:
    """Progress and Stop of one health job, from its snapshot; the whole page reruns once it ends."""
    snap = snapshot(job_id)
    if snap is None:
        return
    if not snap.is_active:
        st.rerun(scope="app")
    if snap.status == RunStatus.QUEUED:
        st.info("The health check waits in the server's queue (a training run goes first).")
    else:
        label = STAGES.get(snap.stage, snap.stage)
        if snap.fraction is not None and snap.stage == "features":
            st.progress(snap.fraction, text=f"{label}: {snap.batch} of {snap.of} images, ETA "
                                            f"{format_seconds(snap.eta)}")
        else:
            st.progress(0.0, text=f"{label}…")
    if st.button("Stop", key=f"stop_{job_id}"):
        get_manager().stop(job_id)
        st.toast("Stop requested: the check ends after the current batch of images.")


def last_failure(workspace, dataset: Dataset) -> None:
    """Say why the newest health job of ``dataset`` did not finish, if it did not."""
    record = latest_health_job(workspace, dataset.id)
    if record and record.get("status") in (RunStatus.FAILED, RunStatus.STOPPED, RunStatus.INTERRUPTED):
        st.warning(f"The last health check {record['status']}: {escape_markdown(record.get('error') or '')}")


def conversions_line(summary: dict) -> str:
    """What ingestion turned upright or converted to RGB, in words."""
    conversions = summary.get("conversions") or {}
    modes = conversions.get("colour_modes") or {}
    converted = ", ".join(f"{count} from {mode}" for mode, count in modes.items()) or "none"
    return (f"At ingestion: {conversions.get('exif_rotated', 0)} images turned upright from their EXIF "
            f"orientation; converted to RGB: {converted}.")


def render_health_summary(workspace, dataset: Dataset) -> None:
    """The Data page's health summary: counts with a link to review them, or how to get them."""
    st.subheader("Data health")
    if "conversions" in dataset.summary:
        st.caption(conversions_line(dataset.summary))
    job = active_job(workspace, dataset)
    if job is not None:
        live_job(job["run_id"])
        return
    last_failure(workspace, dataset)
    found = family_report(workspace, dataset)
    if found is None:
        st.write("Find likely label mistakes (ranked), near-duplicate images, leakage between splits and outliers. "
                 "It computes the image features once (a background job: you can leave the page).")
        start_button(dataset, "Run the health check", key="health_start")
        return
    report, made_for = found
    counts = report["counts"]
    columns = st.columns(4)
    columns[0].metric("Likely label issues", counts["label_issues"])
    columns[1].metric("Near-duplicate groups", counts["near_duplicate_groups"],
                      help=f"{counts['conflict_groups']} of them with conflicting labels.")
    columns[2].metric("Leakage groups", counts["leakage_groups"], help="Near-duplicates in more than one split.")
    columns[3].metric("Outliers", counts["outliers"])
    if made_for != dataset.id:
        st.caption(f"Checked on {made_for}, which this version was made from.")
    st.page_link("pages/explore.py", label="Review them on the Explore page", icon="🔎")
    start_button(dataset, "Check again", key="health_again")


def _apply(workspace, dataset: Dataset, *, relabel: dict | None = None, exclude: set | None = None,
           note: str) -> None:
    try:
        version = create_version(workspace, dataset.id, relabel=relabel, exclude=exclude, note=note)
    except StudioError as exc:
        st.error(escape_markdown(exc))
        return
    st.session_state[NOTICE] = f"Created version {version.id} ({len(version.entries)} images); it is now current."
    set_dataset_id(version.id)
    st.rerun()


def open_issues(report: dict, dataset: Dataset) -> list[dict]:
    """The report's label issues still open in ``dataset`` (not excluded, label not changed since)."""
    labels = {entry.file: entry.label for entry in dataset.entries}
    return [issue for issue in report["label_issues"] if labels.get(issue["file"]) == issue["label"]]


def render_label_review(workspace, dataset: Dataset, report: dict) -> None:
    """Likely label mistakes, most likely first: thumbnail, label, suggestion, and one-click fixes."""
    issues = open_issues(report, dataset)
    st.subheader(f"Likely label mistakes: {len(issues)}")
    if not issues:
        st.success("No likely label mistake left to review.")
        return
    st.caption("Most likely first. Each click makes a new version (the original is never changed).")
    for rank, issue in enumerate(issues[:REVIEW_ROWS]):
        picture, text, fix, drop = st.columns([1, 3, 2, 1])
        picture.image(str(dataset.root / issue["file"]), width=88)
        text.text(f"{issue['source']}\nlabelled '{issue['label']}', looks like '{issue['suggested']}'\n"
                  f"score {issue['score']:.2f}")
        if fix.button(f"Relabel to {issue['suggested']}", key=f"fix_{rank}_{issue['file']}"):
            _apply(workspace, dataset, relabel={issue["file"]: issue["suggested"]},
                   note=f"health check: {issue['label']} -> {issue['suggested']}")
        if drop.button("Exclude", key=f"drop_{rank}_{issue['file']}"):
            _apply(workspace, dataset, exclude={issue["file"]}, note="health check: excluded a likely mistake")
    if len(issues) > REVIEW_ROWS:
        st.caption(f"… and {len(issues) - REVIEW_ROWS} more below these.")


KIND_WORDS = {"within_class": "copies in one class", "conflicting_labels": "conflicting labels",
              "across_splits": "leakage across splits"}


def render_duplicate_review(workspace, dataset: Dataset, report: dict) -> None:
    """Near-duplicate groups with their thumbnails side by side; exclude all but the first of a group."""
    present = {entry.file for entry in dataset.entries}
    groups = [g for g in report["groups"] if sum(item["file"] in present for item in g["files"]) > 1]
    st.subheader(f"Near-duplicate groups: {len(groups)}")
    if not groups:
        st.success("No near-duplicate images.")
        return
    for index, group in enumerate(groups[:GROUPS_SHOWN]):
        files = [item for item in group["files"] if item["file"] in present]
        st.text(", ".join(KIND_WORDS.get(kind, kind) for kind in group["kinds"]))
        st.image([str(dataset.root / item["file"]) for item in files], width=96,
                 caption=[escape_markdown(f"{item['source']} ({item['label']}, {item['split']})") for item in files])
        if st.button("Keep the first, exclude the others", key=f"dedupe_{index}_{files[0]['file']}"):
            _apply(workspace, dataset, exclude={item["file"] for item in files[1:]},
                   note="health check: near-duplicates excluded")
    if len(groups) > GROUPS_SHOWN:
        st.caption(f"… and {len(groups) - GROUPS_SHOWN} more groups.")


def render_review(workspace, dataset: Dataset) -> None:
    """The Explore page's review of the health report (or how to make one)."""
    st.header("Review the health check")
    if active_job(workspace, dataset) is not None:
        st.caption("The health check is running (see its progress above); its findings appear here when it ends.")
        return
    last_failure(workspace, dataset)
    found = family_report(workspace, dataset)
    if found is None:
        st.write("No health check of this dataset yet.")
        start_button(dataset, "Run the health check", key="review_start")
        return
    report, made_for = found
    if made_for != dataset.id:
        st.caption(f"From the check of {made_for}; images changed since are left out.")
    render_label_review(workspace, dataset, report)
    render_duplicate_review(workspace, dataset, report)
