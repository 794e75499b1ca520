"""Runs and export: compare experiments, open one, download or delete it."""

import streamlit as st

from core import runs
from core.delivery.report import run_report
from core.errors import StudioError
from core.run_state import RunSnapshot, RunStatus
from core.training.continuation import accuracy_before
from ui.charts import curves_figure
from ui.export_views import render_export_section
from ui.import_views import render_import_box
from ui.jobs import get_manager
from ui.runs_views import runs_table
from ui.state import get_run_id, get_workspace, set_run_id
from ui.text import escape_markdown
from ui.train_views import STOP_LABEL, STOPPING

st.title("Runs & export")
workspace = get_workspace()
manager = get_manager()

running, queued = manager.server_counts()
st.caption(f"Server queue: {running} running, {queued} waiting, at most {manager.max_jobs} at once.")
for record in manager.status()[1]:
    st.caption(f"{manager.queue_position(record['run_id'])}. {record['run_id']} (waiting)")

records = runs.list_runs(workspace)
render_import_box(workspace, expanded=not records)
if not records:
    st.info("No runs yet. Train a model on the Train page, or import a Teachable Machine model above.")
    st.stop()

st.dataframe(runs_table(records), hide_index=True, width="stretch")
run_ids = [record["run_id"] for record in records]
current = get_run_id()
default = [current] if current in run_ids else run_ids[:1]
selected = st.multiselect("Runs to compare", run_ids, default=default, key="runs_compare")
histories = {run_id: runs.load_history(workspace, run_id) for run_id in selected}
histories = {run_id: history for run_id, history in histories.items() if history}
if histories:
    full = st.toggle("Full range (accuracy 0 to 1, loss from 0)", key="runs_full_range")
    by_id = {record["run_id"]: record for record in records}
    starts = {run_id: accuracy_before(by_id[run_id]) for run_id in histories if accuracy_before(by_id[run_id])}
    left, right = st.columns(2)
    left.plotly_chart(curves_figure(histories, "loss", full_range=full))
    right.plotly_chart(curves_figure(histories, "accuracy", starts=starts, full_range=full))

st.divider()
run_id = st.selectbox("Run to open, export or delete", run_ids,
                      index=run_ids.index(current) if current in run_ids else 0, key="runs_single")
run = RunSnapshot(next(r for r in records if r["run_id"] == run_id))  # the list's record: no progress needed here
st.subheader(run_id)
has_model = runs.model_path(workspace, run_id).exists()
cols = st.columns(5)
if cols[0].button("Open in Evaluate", disabled=not has_model):
    set_run_id(run_id)
    st.switch_page("pages/evaluate.py")
if cols[1].button("Open in Predict", disabled=not has_model):
    set_run_id(run_id)
    st.switch_page("pages/predict.py")
if has_model:
    # A callable is read only when the button is pressed, not on every rerun (a model can be ~100 MB).
    model_file = runs.model_path(workspace, run_id)
    cols[2].download_button("Download model (.keras)", model_file.read_bytes, file_name=f"{run_id}.keras",
                            mime="application/octet-stream", on_click="ignore")
    cols[4].download_button("Download report (HTML)", lambda: run_report(workspace, run_id).encode(),
                            file_name=f"{run_id}-report.html", mime="text/html", on_click="ignore",
                            key="runs_report", help="The model card as one web page: curves, confusion matrix, "
                                                    "per-class table, data and the honest headline.")
if run.is_active:
    if cols[3].button(STOP_LABEL, disabled=runs.stop_requested(runs.run_dir(workspace, run_id))):
        manager.stop(run_id)
        st.rerun()
elif st.session_state.get("confirm_delete") == run_id:
    st.warning(f"Delete run {run_id} and its model for good?")
    yes, no, _ = st.columns([1, 1, 4])
    if yes.button("Yes, delete", type="primary"):
        try:
            runs.delete_run(workspace, run_id)
        except StudioError as exc:
            st.error(escape_markdown(str(exc)))
        else:
            st.session_state.pop("confirm_delete", None)
            st.session_state.pop("runs_compare", None)
            st.session_state.pop("runs_single", None)
            if current == run_id:
                set_run_id(None)
            st.rerun()
    if no.button("Cancel"):
        st.session_state.pop("confirm_delete", None)
        st.rerun()
elif cols[3].button("Delete"):
    st.session_state["confirm_delete"] = run_id
    st.rerun()

if run.status == RunStatus.RUNNING and runs.stop_requested(runs.run_dir(workspace, run_id)):
    st.info(STOPPING)
if run.error:
    (st.warning if run.status == RunStatus.STOPPED else st.error)(escape_markdown(run.error))
with st.expander("Run record"):
    st.json(run.record)

if not run.is_active:
    render_export_section(workspace, run_id)
