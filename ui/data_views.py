"""Figures, tables and widgets for the Data page.

Every file or class name here comes from a user's zip, so it is shown only through
``st.dataframe``, ``st.text`` or plotly axis labels, never as markdown or HTML.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.data.datasets import Dataset
from core.data.splits import SPLIT_ORDER
from core.errors import StudioError
from ui.paging import page_of
from ui.text import escape_markdown

SPLIT_COLOURS = {"train": "#2f6fde", "val": "#f0a202", "test": "#5b8c5a"}
THUMBNAILS_PER_CLASS = 6
MAX_GROUPS_SHOWN = 12
KIND_LABELS = {"within_class": "copies in one class", "conflicting_labels": "conflicting labels",
               "across_splits": "leakage across splits"}


def show_error(message: str) -> None:
    """``st.error`` for a message that may quote user file names, shown literally."""
    st.error(escape_markdown(message))


def run_with_progress(task: Callable, label: str, error_key: str | None = None):
    """Run ``task(progress)`` in the script thread with a progress bar.

    Args:
        task: called with ``progress(fraction, message)``.
        label: text of the bar before the first report.
        error_key: session-state key that keeps the error message (None when it succeeded), so
            the page can show it again on later reruns.

    Returns:
        What ``task`` returned, or None after showing the error when it raised a StudioError.
    """
    bar = st.progress(0.0, text=label)

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message)

    message = None
    try:
        result = task(progress)
    except StudioError as exc:
        result, message = None, str(exc)
        show_error(message)
    bar.empty()
    if error_key:
        st.session_state[error_key] = message
    return result


def counts_figure(summary: dict) -> go.Figure:
    """Grouped bars: images per class, one colour per split."""
    figure = go.Figure()
    for split in SPLIT_ORDER:
        counts = summary["counts"].get(split)
        if counts:
            figure.add_bar(x=list(counts), y=list(counts.values()), name=split,
                           marker_color=SPLIT_COLOURS[split])
    figure.update_layout(barmode="group", title="Images per class and split", height=340,
                         xaxis_title="class", yaxis_title="images", xaxis_type="category",
                         margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def sizes_figure(dataset: Dataset) -> go.Figure:
    """Histogram of the original widths and heights."""
    figure = go.Figure()
    figure.add_histogram(x=[e.width for e in dataset.entries], name="width", opacity=0.7, nbinsx=30)
    figure.add_histogram(x=[e.height for e in dataset.entries], name="height", opacity=0.7, nbinsx=30)
    figure.update_layout(barmode="overlay", title="Original image sizes", height=300, xaxis_title="pixels",
                         yaxis_title="images", margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def issues_frame(items: list[dict]) -> pd.DataFrame:
    """Rejected or skipped files as a two-column table."""
    return pd.DataFrame(items, columns=["file", "reason"])


def warnings_frame(summary: dict) -> pd.DataFrame:
    """The summary's warnings as a table."""
    return pd.DataFrame(summary["warnings"], columns=["code", "message"])


def duplicates_frame(group: dict) -> pd.DataFrame:
    """Files of one duplicate group."""
    return pd.DataFrame(group["files"], columns=["source", "label", "split"])


def render_overview(dataset: Dataset) -> None:
    """Headline numbers and the counts chart."""
    summary = dataset.summary
    columns = st.columns(4)
    columns[0].metric("Classes", len(dataset.classes))
    columns[1].metric("Images", summary["total_images"])
    columns[2].metric("Splits", " / ".join(dataset.splits))
    columns[3].metric("Imbalance", f"{summary['imbalance_ratio']:.1f} : 1",
                      help="Images in the largest class per image in the smallest class.")
    st.plotly_chart(counts_figure(summary), key="data-counts")
    table = pd.DataFrame(summary["counts"]).fillna(0).astype(int)
    table.index.name = "class"
    st.dataframe(table, key="data-counts-table")


def render_thumbnails(dataset: Dataset) -> None:
    """A few images of every class."""
    st.subheader("Examples per class")
    for label in dataset.classes:
        st.text(f"{label}  ({dataset.summary['class_totals'][label]} images)")
        entries = page_of([e for e in dataset.entries if e.label == label], THUMBNAILS_PER_CLASS,
                          key=f"data_class_page_{dataset.id}_{label}")
        st.image([str(dataset.root / e.file) for e in entries], width=96,
                 caption=[escape_markdown(e.source) for e in entries])


def render_issues(dataset: Dataset) -> None:
    """Warnings, rejected and skipped files, and the image size distribution."""
    summary = dataset.summary
    st.subheader("Warnings")
    if summary["warnings"]:
        st.dataframe(warnings_frame(summary), hide_index=True, key="data-warnings",
                     column_config={"message": st.column_config.TextColumn(width="large")})
    else:
        st.success("No warnings: classes are balanced, large enough and free of duplicates.")
    st.subheader("Rejected files")
    if summary["rejected"]:
        st.dataframe(issues_frame(summary["rejected"]), hide_index=True, key="data-rejected",
                     column_config={"reason": st.column_config.TextColumn(width="large")})
    else:
        st.text("None: every image file could be decoded.")
    if summary["skipped"]:
        with st.expander(f"Skipped non-image and system files ({len(summary['skipped'])})"):
            st.dataframe(issues_frame(summary["skipped"]), hide_index=True, key="data-skipped")
    st.plotly_chart(sizes_figure(dataset), key="data-sizes")


def render_duplicates(dataset: Dataset) -> None:
    """Groups of identical images, with one thumbnail per group."""
    groups = dataset.summary["duplicates"]
    if not groups:
        return
    st.subheader(f"Identical images ({len(groups)} groups)")
    by_file = {e.source: e for e in dataset.entries}
    for group in groups[:MAX_GROUPS_SHOWN]:
        left, right = st.columns([1, 5])
        first = by_file.get(group["files"][0]["source"])
        if first is not None and Path(dataset.root / first.file).exists():
            left.image(str(dataset.root / first.file), width=80)
        right.text(", ".join(KIND_LABELS.get(kind, kind) for kind in group["kinds"]))
        right.dataframe(duplicates_frame(group), hide_index=True, key=f"dup-{group['sha256']}")
    if len(groups) > MAX_GROUPS_SHOWN:
        st.text(f"... and {len(groups) - MAX_GROUPS_SHOWN} more groups.")
