"""The Train page's "Continue one of my runs" choice: a finished run (trained here or imported), trained further
continued on the current dataset."""

from __future__ import annotations

import streamlit as st

from core import runs
from core.data.roles import format_headline
from core.errors import StudioError
from core.run_state import RESULT_STATUSES
from core.training.continuation import continue_config, spec_of_run
from ui import train_views as views
from ui.text import escape_markdown

NEW = ""


def continuable_runs(workspace) -> dict[str, dict]:
    """``{run id: record}`` of the finished runs with a saved model, newest first."""
    return {record["run_id"]: record for record in runs.list_runs(workspace)
            if record.get("kind", "train") == "train" and record.get("status") in RESULT_STATUSES
            and runs.model_path(workspace, record["run_id"]).exists()}


def _label(record: dict | None) -> str:
    if record is None:
        return "pick the run to continue"
    classes = ", ".join(record.get("classes") or [])
    if record.get("imported_from"):
        return f"run {record['run_id']}: imported from Teachable Machine ({classes})"
    return (f"run {record['run_id']}: {record['config']['backbone']}, accuracy "
            f"{format_headline(record.get('headline'))} ({classes})")


def start_from_picker(workspace) -> str | None:
    """The "Run to continue" selectbox; returns the run id to continue, or None until one is picked."""
    candidates = continuable_runs(workspace)
    if st.session_state.get("train_start_from") not in (NEW, *candidates):
        st.session_state["train_start_from"] = NEW
    choice = st.selectbox("Run to continue", [NEW, *candidates], key="train_start_from", persist_state=views.KEEP,
                          format_func=lambda run_id: _label(candidates.get(run_id)),
                          help="Continue a finished or imported run on this dataset (same classes): its backbone, "
                               "input size and resize mode are kept; its head is refitted (feature extraction) or "
                               "its top layers fine-tuned too. Its accuracy before is measured on this dataset's "
                               "validation images first.")
    return choice or None


def render_continue(workspace, manager, dataset, source_run: str) -> None:
    """Strategy and settings for continuing ``source_run`` on ``dataset``, a clear refusal when it cannot be,
    else a Start button that queues the continued run."""
    record = runs.load_run(workspace, source_run)
    st.subheader("Strategy")
    strategy = views.strategy_picker()
    try:
        spec = spec_of_run(record)
        settings = views.render_advanced(spec)
        own = {key: value for key, value in settings.items() if key not in ("image_size", "resize", "weights")}
        config, fields = continue_config(workspace, source_run, dataset.id, strategy=strategy, **own)
    except StudioError as exc:
        st.error(escape_markdown(str(exc)))
        st.button("Start training", type="primary", disabled=True, key="continue_start")
        return
    st.caption(escape_markdown(f"Continues run {source_run} with its base ({spec.display_name}, "
                               f"{config.image_size} px, {config.resize}); classes of dataset {dataset.id} as "
                               "they pair with the run's:"))
    pairs = fields["continued_from"]["class_mapping"]
    renamed = {data: model for data, model in pairs.items() if data != model}
    if renamed:
        st.table({"dataset class": list(renamed), "run class": list(renamed.values())})
        confirmed = st.checkbox("These pairs are right", key=f"continue_pairs_ok_{source_run}_{dataset.id}")
    else:
        st.caption("Same class names.")
        confirmed = True
    views.start_button(manager, config, key="continue_start", disabled=not confirmed, fields=fields)
