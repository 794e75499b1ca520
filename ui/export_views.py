"""The export section of the Runs page: build each format (a background job), download it, show its parity check.

Build queues an export job (``core/export_jobs.py``) that writes the files under ``workspace/tmp/exports/<run_id>/``
with the parity results in ``parity.json``; the section shows its progress while it runs and the downloads of the
files it wrote, also after a refresh or in another session.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from core import runs
from core.delivery import export
from core.export_jobs import ExportConfig, export_file, latest_export_job, load_parity
from core.tool_jobs import ACTIVE
from core.workspace import Workspace
from ui import tool_job_views


@dataclass(frozen=True)
class ExportFormat:
    key: str          # also the core.delivery.export parity format name
    title: str
    mime: str

    @property
    def short_title(self) -> str:
        return self.title.split(" (")[0]


EXPORT_FORMATS = (
    ExportFormat("bundle", "Bundle (.zip: model.keras, labels, model card, predict.py)", "application/zip"),
    ExportFormat("tflite", "TFLite float32", "application/octet-stream"),
    ExportFormat("tflite_dynamic", "TFLite dynamic-range quantized", "application/octet-stream"),
    ExportFormat("savedmodel", "TensorFlow SavedModel (.zip of the folder)", "application/zip"),
)

_ORDER = {fmt.key: position for position, fmt in enumerate(EXPORT_FORMATS)}
_TITLES = {fmt.key: fmt.short_title for fmt in EXPORT_FORMATS}


def describe_export(progress: dict) -> tuple[float | None, str]:
    """The fraction done and what an export job does now, from its ``progress.json``."""
    stage, fmt = progress.get("stage", "starting"), _TITLES.get(progress.get("format"), progress.get("format"))
    done, of = progress.get("formats_done", 0), progress.get("formats_of") or 1
    step = f" (format {done + 1} of {of})" if of > 1 else ""
    if stage == "exporting":
        return done / of, f"Exporting {fmt}{step}…"
    if stage == "parity":
        fraction, text = tool_job_views.counted(progress, f"Checking {fmt} against the in-app model{step}",
                                                "validation images")
        return (done + 0.5 + 0.5 * (fraction or 0.0)) / of, text
    return None, "Starting…"


def _tolerance_text(row: dict) -> str:
    if row.get("tolerance") is None:  # a parity.json written before quantized formats had a tolerance
        return "none"
    return f"{'max' if row.get('tolerance_on', 'max_abs_diff') == 'max_abs_diff' else 'mean'} ≤ {row['tolerance']:g}"


def parity_frame(rows: dict) -> pd.DataFrame:
    """One row per checked format: same class %, max and mean probability difference, tolerance, pass / fail."""
    table = [{
        "format": _TITLES.get(key, key),
        "same class %": round(100 * row["agreement"], 2),
        "max prob diff": row["max_abs_diff"],
        "mean prob diff": row.get("mean_abs_diff"),
        "tolerance": _tolerance_text(row),
        "images": row["images"],
        "result": "pass" if row["passed"] else "FAIL",
    } for key, row in sorted(rows.items(), key=lambda item: _ORDER.get(item[0], len(_ORDER)))]
    return pd.DataFrame(table, columns=["format", "same class %", "max prob diff", "mean prob diff", "tolerance",
                                        "images", "result"])


def render_export_section(workspace: Workspace, run_id: str) -> None:
    """Build / download buttons per format and the parity table, for a run that saved a model."""
    st.subheader("Export")
    if not runs.model_path(workspace, run_id).exists():
        st.caption("This run has no saved model to export.")
        return
    st.caption("Each export is checked against the in-app model on the validation images: the same class for "
               f"at least {export.MIN_AGREEMENT:.0%} of them; float formats within "
               f"{export.FLOAT_TOLERANCE:g} in probability on every image, the quantized TFLite within "
               f"{export.QUANTIZED_MEAN_TOLERANCE:g} on average. Building runs in the background: you can leave "
               "the page.")
    job = latest_export_job(workspace, run_id)
    active = job is not None and job.get("status") in ACTIVE
    if active:
        tool_job_views.live_job(job["run_id"], describe_export, what="export")
    else:
        tool_job_views.show_ending(job, what="export")
    for fmt in EXPORT_FORMATS:
        target = export_file(workspace, run_id, fmt.key)
        name, build, download = st.columns([3, 1, 1])
        name.write(fmt.title)
        if not active:
            tool_job_views.start_button(ExportConfig(run_id, (fmt.key,)), "Rebuild" if target.exists() else "Build",
                                        key=f"export_build_{fmt.key}_{run_id}", container=build)
        if target.exists():  # the file the job wrote (replaced whole when rebuilt), read only when clicked
            download.download_button("Download", target.read_bytes, file_name=target.name, mime=fmt.mime,
                                     key=f"export_download_{fmt.key}_{run_id}", on_click="ignore")
    if not active:
        tool_job_views.start_button(ExportConfig(run_id, tuple(_ORDER)), "Build all formats",
                                    key=f"export_build_all_{run_id}")
    rows = load_parity(workspace, run_id)
    if rows:
        st.markdown("**Parity with the in-app model**")
        st.dataframe(parity_frame(rows), hide_index=True, width="stretch")
