"""The "Import a model" box of the Runs page: a Teachable Machine export becomes an ordinary run."""

from __future__ import annotations

import json

import streamlit as st

from core.delivery.teachable import ExportFiles, files_from_zip
from core.errors import ModelImportError, StudioError
from ui.state import set_run_id
from ui.text import escape_markdown

IMPORT_TYPES = ["zip", "h5", "txt", "json", "bin"]
_BY_SUFFIX = {".h5": "keras_model.h5", ".txt": "labels.txt", ".bin": "weights.bin"}


def export_files(uploads) -> ExportFiles:
    """The export's files from uploads: one zip, or the loose files (browsers rename repeated downloads, e.g.
    ``keras_model (1).h5``, so each file is recognised by its kind rather than its exact name)."""
    uploads = list(uploads)
    names = [upload.name for upload in uploads]
    zips = [upload for upload in uploads if upload.name.lower().endswith(".zip")]
    if zips:
        if len(uploads) > 1:
            raise ModelImportError(f"Got {', '.join(names)}: upload the export's zip on its own, or its files "
                                   "without a zip.")
        return files_from_zip(zips[0].getvalue(), zips[0].name)
    data, shown = {}, {}
    for upload in uploads:
        content = upload.getvalue()
        name = _kind_of(upload.name, content)
        if name in data:
            raise ModelImportError(f"'{shown[name]}' and '{upload.name}' are both a {name}; upload one export.")
        data[name], shown[name] = content, f"'{upload.name}' (uploaded)"
    return ExportFiles(data, shown, ", ".join(names))


def _kind_of(name: str, content: bytes) -> str:
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    if suffix == ".json":
        try:
            parsed = json.loads(content.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            raise ModelImportError(f"'{name}' is not valid JSON; expected model.json or metadata.json.") from None
        return "model.json" if isinstance(parsed, dict) and "modelTopology" in parsed else "metadata.json"
    raise ModelImportError(f"'{name}' is not part of a Teachable Machine export (zip, .h5, .txt, .json, .bin).")


def render_import_box(workspace, *, expanded: bool = False) -> None:
    """File uploader, optional name and an Import button; a new run becomes the current one."""
    with st.expander("Import a model (Teachable Machine)", expanded=expanded):
        st.caption("Drop the Keras download (converted_keras.zip, or keras_model.h5 with labels.txt) or the "
                   "TensorFlow.js download (its zip, or model.json, weights.bin and metadata.json). The model is "
                   "rebuilt with current Keras and becomes a run you can evaluate, use and export.")
        uploads = st.file_uploader("Teachable Machine export", type=IMPORT_TYPES, accept_multiple_files=True,
                                   key="import_files")
        name = st.text_input("Name (optional)", key="import_name")
        if st.button("Import", disabled=not uploads, key="import_button"):
            try:
                with st.spinner("Rebuilding the model with Keras 3…"):
                    from core.delivery.teachable_model import import_teachable

                    record = import_teachable(workspace, export_files(uploads), name=name)
            except StudioError as exc:
                st.error(escape_markdown(str(exc)))
            else:
                set_run_id(record["run_id"])
                for key in ("runs_compare", "runs_single"):  # the page's pickers then open the new run
                    st.session_state.pop(key, None)
                st.session_state["import_done"] = record["run_id"]
                st.rerun()
        done = st.session_state.get("import_done")
        if done:
            st.success(f"Imported as run {done}. Open it in Evaluate (pick a dataset with the same classes) or "
                       "Predict, or export it below.")
