"""The export section of the Runs page: build each format, download it, show its parity check.

Built files go to ``workspace/tmp/exports/<run_id>/`` (with the parity results in ``parity.json``),
so a refresh or another session finds them again without rebuilding.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from core import export, runs
from core.errors import StudioError
from core.workspace import Workspace, atomic_write_json, read_json
from ui.text import escape_markdown


@dataclass(frozen=True)
class ExportFormat:
    key: str          # also the core.export parity format name
    title: str
    file_suffix: str
    mime: str


EXPORT_FORMATS = (
    ExportFormat("bundle", "Bundle (.zip: model.keras, labels, model card, predict.py)", "-bundle.zip",
                 "application/zip"),
    ExportFormat("tflite", "TFLite float32", ".tflite", "application/octet-stream"),
    ExportFormat("tflite_dynamic", "TFLite dynamic-range quantized", "-dynamic.tflite", "application/octet-stream"),
    ExportFormat("savedmodel", "TensorFlow SavedModel (.zip of the folder)", "-savedmodel.zip", "application/zip"),
)

_ORDER = {fmt.key: position for position, fmt in enumerate(EXPORT_FORMATS)}


def export_dir(workspace: Workspace, run_id: str) -> Path:
    return workspace.tmp_dir / "exports" / run_id


def build_export(workspace: Workspace, run_id: str, fmt: ExportFormat) -> Path:
    """Write ``fmt`` of the run under the exports folder; returns the downloadable file."""
    folder = export_dir(workspace, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{run_id}{fmt.file_suffix}"
    if fmt.key == "bundle":
        return export.export_bundle(workspace, run_id, target)
    if fmt.key in ("tflite", "tflite_dynamic"):
        quantize = "dynamic" if fmt.key == "tflite_dynamic" else None
        return export.export_tflite(workspace, run_id, target, quantize=quantize)
    saved = folder / f"{run_id}-savedmodel"
    shutil.rmtree(saved, ignore_errors=True)
    export.export_savedmodel(workspace, run_id, saved)
    partial = shutil.make_archive(str(folder / f".{run_id}-savedmodel"), "zip", root_dir=saved)
    Path(partial).replace(target)  # the download never sees a half-written zip
    shutil.rmtree(saved, ignore_errors=True)
    return target


def record_parity(workspace: Workspace, run_id: str, fmt: ExportFormat) -> dict:
    """Run the parity check of one format and keep its row in ``parity.json``."""
    row = export.check_parity(workspace, run_id, formats=(fmt.key,))[fmt.key]
    path = export_dir(workspace, run_id) / "parity.json"
    rows = read_json(path, default={}) or {}
    rows[fmt.key] = row
    atomic_write_json(path, rows)
    return row


def _tolerance_text(row: dict) -> str:
    if row.get("tolerance") is None:  # a parity.json written before quantized formats had a tolerance
        return "none"
    return f"{'max' if row.get('tolerance_on', 'max_abs_diff') == 'max_abs_diff' else 'mean'} ≤ {row['tolerance']:g}"


def parity_frame(rows: dict) -> pd.DataFrame:
    """One row per checked format: same class %, max and mean probability difference, tolerance, pass / fail."""
    titles = {fmt.key: fmt.title.split(" (")[0] for fmt in EXPORT_FORMATS}
    table = [{
        "format": titles.get(key, key),
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
               f"{export.QUANTIZED_MEAN_TOLERANCE:g} on average.")
    for fmt in EXPORT_FORMATS:
        target = export_dir(workspace, run_id) / f"{run_id}{fmt.file_suffix}"
        name, build, download = st.columns([3, 1, 1])
        name.write(fmt.title)
        if build.button("Rebuild" if target.exists() else "Build", key=f"export_build_{fmt.key}_{run_id}"):
            try:
                with st.spinner(f"Building {fmt.title.split(' (')[0]} and checking parity…"):
                    target = build_export(workspace, run_id, fmt)
                    record_parity(workspace, run_id, fmt)
            except StudioError as exc:
                st.error(escape_markdown(str(exc)))
            else:
                st.rerun()  # redraw with the download button, "Rebuild" and the new parity row
        if target.exists():
            download.download_button("Download", target.read_bytes, file_name=target.name, mime=fmt.mime,
                                     key=f"export_download_{fmt.key}_{run_id}", on_click="ignore")
    rows = read_json(export_dir(workspace, run_id) / "parity.json", default={}) or {}
    if rows:
        st.markdown("**Parity with the in-app model**")
        st.dataframe(parity_frame(rows), hide_index=True, width="stretch")
