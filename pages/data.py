"""Data: upload a zip (or take the sample), reopen or delete datasets, inspect the current one."""

import streamlit as st

from core.data.datasets import delete_dataset, ingest, list_datasets
from core.data.sample import create_sample_dataset
from core.delivery.server_import import import_root, list_importable, resolve_import_path
from core.errors import StudioError
from ui import data_views as views
from ui import health_views
from ui.state import get_dataset_id, get_workspace, require_dataset, set_dataset_id
from ui.text import escape_markdown

st.title("Data")
st.write("Upload a zip with one folder per class (or `train/` and `val/` folders holding class folders, "
         "or a `labels.csv`). Every image is checked and decoded; problems are listed below.")
workspace = get_workspace()


def _adopt(dataset) -> None:
    if dataset is not None:
        changed = dataset.id != get_dataset_id()
        set_dataset_id(dataset.id)
        st.session_state.pop("data_confirm_delete", None)
        if changed:
            st.rerun()  # the sidebar, drawn before this page, shows the new dataset


left, right = st.columns([3, 1])
uploaded = left.file_uploader("Zip of labelled images", type=["zip"], key="data_upload")
if uploaded is not None and st.session_state.get("data_last_upload") != uploaded.file_id:
    # A click during ingestion interrupts it (nothing is kept) and the next run starts it again;
    # once it finished or failed, the same upload is not ingested again on every rerun.
    ingested = views.run_with_progress(lambda progress: ingest(uploaded, workspace, progress=progress),
                                       "Checking the zip", error_key="data_upload_error")
    st.session_state["data_last_upload"] = uploaded.file_id
    _adopt(ingested)
elif uploaded is not None and st.session_state.get("data_upload_error"):
    with left:
        views.show_error(st.session_state["data_upload_error"])
right.write("No data at hand?")
if right.button("Use the sample dataset", key="data_sample", help="Four classes of generated shapes, 50 each."):
    _adopt(views.run_with_progress(lambda progress: create_sample_dataset(workspace, progress=progress),
                                   "Drawing the sample images"))
if import_root() is not None:
    with st.expander(f"Import from the server folder {import_root()}"):
        choices = list_importable()
        choice = st.text_input("Zip or folder, relative to that folder", key="data_server_path",
                               placeholder=choices[0] if choices else "")
        if choices:
            st.caption("Found there: " + escape_markdown(", ".join(choices)))
        if st.button("Import", key="data_server_import", disabled=not choice):
            try:
                path = resolve_import_path(choice)
            except StudioError as exc:
                views.show_error(str(exc))
            else:
                _adopt(views.run_with_progress(lambda progress: ingest(path, workspace, progress=progress),
                                               f"Checking {path.name}"))

datasets = list_datasets(workspace)
if datasets:
    names = {d.id: f"{d.name}  ·  {len(d.entries)} images, {len(d.classes)} classes  ·  {d.id}" for d in datasets}
    with st.expander(f"Your datasets ({len(datasets)})", expanded=get_dataset_id() is None):
        labels = {label: dataset_id for dataset_id, label in names.items()}
        chosen = labels[st.selectbox("Dataset", list(labels), key="data_pick")]
        open_column, delete_column, _ = st.columns([1, 1, 4])
        if open_column.button("Open", key="data_open"):
            _adopt(next(d for d in datasets if d.id == chosen))
        if delete_column.button("Delete…", key="data_delete"):
            st.session_state["data_confirm_delete"] = chosen
        pending = st.session_state.get("data_confirm_delete")
        if pending in names:
            st.warning("Delete this dataset and its stored images? Runs trained on it keep their models.")
            st.text(names[pending])
            yes, no, _ = st.columns([1, 1, 4])
            if yes.button("Yes, delete", key="data_delete_yes", type="primary"):
                try:
                    delete_dataset(workspace, pending)
                except StudioError as exc:
                    views.show_error(str(exc))
                st.session_state.pop("data_confirm_delete", None)
                if get_dataset_id() == pending:
                    set_dataset_id(None)
                st.rerun()
            if no.button("Cancel", key="data_delete_no"):
                st.session_state.pop("data_confirm_delete", None)
                st.rerun()

dataset = require_dataset("Upload a zip or use the sample dataset to begin.")

st.header("Current dataset")
st.text(f"{dataset.name}  ({dataset.id})")
views.render_overview(dataset)
health_views.render_health_summary(workspace, dataset)
views.render_issues(dataset)
views.render_thumbnails(dataset)
views.render_duplicates(dataset)
st.page_link("pages/train.py", label="Next: train a model on this dataset", icon="➡️")
