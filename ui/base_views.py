"""The Train page's base picker: start from a registry backbone, one of your finished runs, or a model file."""

from __future__ import annotations

import streamlit as st

from core import runs
from core.config import BASE_STRATEGIES, SETTINGS, TrainConfig
from core.errors import StudioError
from core.models.base_files import list_stored_bases, store_base_bytes
from core.models.base_models import SCALING_WORDS, resolve_base
from core.run_state import RESULT_STATUSES
from ui import train_views as views
from ui.text import escape_markdown

SOURCES = ("A pretrained backbone", "One of my runs", "A model file", "Continue one of my runs")
# The page says how the file expects its pixels: "auto" (read from the file) is settled before the choice is shown.
SCALINGS = tuple(scaling for scaling in SETTINGS["input_scaling"].choices if scaling != "auto")


def render_base_flow(workspace, dataset, manager) -> bool:
    """The "Start from" choice; for a run or a model file, the whole form down to Start. True when it drew it."""
    source = st.radio("Start from", SOURCES, key="train_base_source", persist_state=views.KEEP,
                      horizontal=True,
                      help="A pretrained backbone from the list below; the feature extractor of one of your "
                           "finished runs (any classes); a Keras model file (.keras or .h5) you bring; or the "
                           "whole model of a finished or imported run, trained further (same classes).")
    if source == SOURCES[0]:
        return False
    if source == SOURCES[3]:  # the whole model of a run with the same classes, trained further
        from ui import continue_views

        source_run = continue_views.start_from_picker(workspace)
        if source_run:
            continue_views.render_continue(workspace, manager, dataset, source_run)
        return True
    st.subheader("1. Base model")
    chosen = _run_choice(workspace) if source == SOURCES[1] else _file_choice(workspace)
    if chosen is None:
        return True
    base_model, cut_layer, scaling = chosen
    try:
        base = resolve_base(workspace, base_model, cut_layer, scaling)
    except StudioError as exc:
        st.error(escape_markdown(str(exc)))
        return True
    st.caption(f"Base: {escape_markdown(base.record['description'])}; {base.image_size} px input, frozen while "
               "the new head is fitted.")
    st.subheader("2. Strategy")
    strategy = st.radio("Strategy", BASE_STRATEGIES, key="train_base_strategy", persist_state=views.KEEP,
                        horizontal=True,
                        help="feature-extraction: a new head on the base's features; fine-tune: then also adjust "
                             "the base's top layers a little")
    settings = views.render_advanced(base.spec)
    settings.pop("weights", None)
    settings["image_size"] = base.image_size
    try:
        config = TrainConfig(dataset_id=dataset.id, strategy=strategy, backbone=base.spec.name,
                             base_model=base.record.get("run_id") or base.record["base_id"],
                             cut_layer=base.cut_layer if base.kind == "file" else "",
                             input_scaling=base.input_scaling, **settings)
    except StudioError as exc:
        st.error(escape_markdown(str(exc)))
        return True
    views.start_button(manager, config, key="train_base_start")
    return True


def _run_choice(workspace):
    finished = [r for r in runs.list_runs(workspace)
                if r.get("status") in RESULT_STATUSES and runs.model_path(workspace, r["run_id"]).exists()]
    if not finished:
        st.info("No finished run yet. Train one on a pretrained backbone first, then use it as a base.")
        return None
    labels = {r["run_id"]: f"{r['run_id']}: {r.get('dataset_id')}, classes {', '.join(r.get('classes') or [])}"
              for r in finished}
    if st.session_state.get("train_base_run") not in labels:  # a kept choice whose run was deleted since
        st.session_state.pop("train_base_run", None)
    run_id = st.selectbox("Run to start from", list(labels), format_func=labels.get, key="train_base_run",
                          persist_state=views.KEEP,
                          help="Its model below the head (preprocessing, backbone, pooling) becomes the frozen "
                               "base; the new run can have other classes.")
    return run_id, "", "auto"


def _file_choice(workspace):
    upload = st.file_uploader("Model file (.keras or .h5)", type=["keras", "h5"], key="train_base_upload",
                              help="Loaded in safe mode: no Lambda layers or custom objects. It is kept in the "
                                   "workspace with its hash.")
    if upload is not None and st.session_state.get("train_base_uploaded") != upload.file_id:
        try:
            with st.spinner(f"Checking {upload.name}…"):
                stored = store_base_bytes(workspace, upload.getvalue(), upload.name)
        except StudioError as exc:
            st.error(escape_markdown(str(exc)))
            return None
        st.session_state["train_base_uploaded"] = upload.file_id
        st.session_state["train_base_file"] = stored.base_id
    stored = {base.base_id: base for base in list_stored_bases(workspace)}
    if not stored:
        st.info("Upload a Keras model file to use it as the base.")
        return None
    if st.session_state.get("train_base_file") not in stored:
        st.session_state["train_base_file"] = next(iter(stored))
    base_id = st.selectbox("Model file", list(stored), key="train_base_file", persist_state=views.KEEP,
                           format_func=lambda key: f"{stored[key].file_name} (sha256 {stored[key].sha256[:12]})")
    chosen = stored[base_id]
    names = chosen.candidate_names()
    shapes = {c["name"]: c["output_shape"] for c in chosen.candidates}
    default = names.index(chosen.default_cut) if chosen.default_cut in names else None
    cut = st.selectbox("Cut at layer (its output is the embedding)", names, index=default,
                       key=f"train_base_cut_{base_id}", persist_state=views.KEEP,
                       format_func=lambda n: f"{n} {tuple(shapes[n])}",
                       help="Default: the last pooled or flattened layer before the classifier. A feature map is "
                            "average-pooled.")
    if default is None:
        st.caption("No pooled or flattened layer was found automatically: pick the layer to cut at.")
    scaling = st.radio("Pixels the model expects", SCALINGS, key=f"train_base_scaling_{base_id}",
                       persist_state=views.KEEP, horizontal=True,
                       index=0 if chosen.carries_preprocessing else None,
                       format_func=lambda s: f"{s} ({SCALING_WORDS[s]})",
                       help="raw when it scales its own pixels; symmetric for MobileNet, Inception, Xception; "
                            "caffe for ResNet50 and VGG")
    if not chosen.carries_preprocessing:
        st.caption("This model does not scale its own pixels: say how it expects them.")
    if cut is None or scaling is None:
        return None
    return base_id, cut, scaling
