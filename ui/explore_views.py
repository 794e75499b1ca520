"""Widgets of the Explore page: the embedding map (drawn by a background job), picking images, making a version,
downloads."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import runs
from core.data.datasets import Dataset
from core.data.versions import create_version, list_versions, repeat_run_config
from core.errors import StudioError
from core.insight.projection import embeddings_csv, embeddings_npz, load_embeddings
from core.map_jobs import MapConfig, load_map
from core.models.backbones import BACKBONES, get_backbone
from core.models.weights import weights_available
from core.run_state import RunStatus
from core.tool_jobs import ACTIVE, latest_job, tool_jobs
from ui import tool_job_views
from ui.paging import page_of
from ui.state import set_dataset_id, set_run_id
from ui.text import escape_markdown

CHOSEN = "explore_chosen"      # session key of the multiselect of images to change
MAP = "explore_map"            # session key of the map read from a job {"job_id": ..., "frame": DataFrame}
CHART = "explore_map_chart"    # key of the plotly chart (its selection)
NOTICE = "explore_notice"
THUMBNAILS = 24


def available_backbones() -> dict[str, list[int]]:
    """``{backbone: sizes whose ImageNet weights are on this machine}``, only backbones with at least one."""
    found = {}
    for name, spec in BACKBONES.items():
        sizes = [size for size in spec.allowed_sizes if weights_available(spec, size)]
        if sizes:
            found[name] = sizes
    return found


def map_settings(workspace, dataset: Dataset) -> dict:
    """Backbone, size, weights, projection and run pickers; returns the chosen settings."""
    choices = available_backbones()
    weights = "imagenet"
    if not choices:
        st.warning("No pretrained weights are on this machine: the map uses a random-init MobileNetV2, whose "
                   "features carry almost no information. Put the weight files in the weights folder.")
        choices, weights = {"mobilenet_v2": list(get_backbone("mobilenet_v2").allowed_sizes)}, "none"
    names = list(choices)
    left, middle, right = st.columns(3)
    backbone = left.selectbox("Backbone", names, index=names.index("mobilenet_v2") if "mobilenet_v2" in names else 0,
                              format_func=lambda name: BACKBONES[name].display_name, key="explore_backbone")
    sizes = choices[backbone]
    default = get_backbone(backbone).default_size
    image_size = middle.selectbox("Image size (px)", sizes, index=sizes.index(default) if default in sizes else 0,
                                  key="explore_size", help="Only sizes whose weights are on this machine.")
    method = right.radio("Projection", ["pca", "tsne"], horizontal=True, key="explore_method",
                         format_func=lambda m: {"pca": "PCA (fast)", "tsne": "t-SNE (clusters)"}[m],
                         help="PCA keeps the big directions of variation; t-SNE keeps neighbourhoods.")
    done = [r for r in runs.list_runs(workspace)
            if r.get("config", {}).get("dataset_id") == dataset.id and r.get("status") == RunStatus.DONE]
    options = [None] + [r["run_id"] for r in done]
    run_id = st.selectbox("Also mark the images this run gets wrong", options, index=1 if done else 0,
                          format_func=lambda rid: "(no run)" if rid is None else rid, key="explore_run",
                          help="Predicts every image of the dataset with the run's model.")
    return {"dataset_id": dataset.id, "backbone": backbone, "image_size": int(image_size), "weights": weights,
            "method": method, "run_id": run_id}


def map_config(settings: dict) -> MapConfig:
    """The map job of the chosen settings."""
    return MapConfig(settings["dataset_id"], settings["backbone"], settings["image_size"], settings["weights"],
                     settings["method"], settings["run_id"])


def map_jobs(workspace, config: MapConfig) -> tuple[dict | None, dict | None]:
    """``(newest map job of these settings, newest finished one)``, either None."""
    records = [r for r in tool_jobs(workspace, config.job_kind) if r.get("config", {}).get("dataset_id")
               == config.dataset_id]
    return latest_job(workspace, config, records), latest_job(workspace, config,
                                                              [r for r in records if r.get("status") == RunStatus.DONE])


def current_map(workspace, dataset: Dataset, record: dict | None) -> pd.DataFrame | None:
    """The map finished job ``record`` drew (read once per session and job), or None."""
    if record is None:
        return None
    stored = st.session_state.get(MAP)
    if stored and stored["job_id"] == record["run_id"]:
        return stored["frame"]
    frame = load_map(workspace, record["run_id"], dataset)
    if frame is not None:
        st.session_state[MAP] = {"job_id": record["run_id"], "frame": frame}
    return frame


MAP_STAGES = {"starting": "Starting", "features": "Computing image features (cached after the first time)",
              "projecting": "Projecting to 2-D", "neighbours": "Finding each image's nearest neighbours",
              "run mistakes": "Predicting every image with the chosen run's model", "saving": "Saving the map"}


def describe_map(progress: dict) -> tuple[float | None, str]:
    """The fraction done and what a map job does now, from its ``progress.json``."""
    stage = progress.get("stage", "starting")
    label = MAP_STAGES.get(stage, stage)
    if stage == "features":
        return tool_job_views.counted(progress, label, "images")
    if stage == "projecting" and progress.get("method") == "tsne":
        label = "Projecting to 2-D with t-SNE (the slow part for a big dataset)"
    return None, f"{label}…"


def render_map_job(latest: dict | None, config: MapConfig, *, drawn: bool) -> bool:
    """The map job of these settings: its progress while active, else *Draw the map* (when not drawn yet) and why
    the last one did not finish; True while a job is active."""
    if latest is not None and latest.get("status") in ACTIVE:
        tool_job_views.live_job(latest["run_id"], describe_map, what="map")
        return True
    tool_job_views.show_ending(latest, what="map")
    if not drawn:
        tool_job_views.start_button(config, "Draw the map", key="explore_draw", type="primary")
    return False


def map_figure(frame: pd.DataFrame) -> go.Figure:
    """Scatter coloured by label, hover file names; flagged points ringed in black."""
    data = frame.assign(row=range(len(frame)))
    figure = px.scatter(data, x="x", y="y", color="label", hover_name="source", custom_data=["row"],
                        hover_data={"split": True, "x": False, "y": False, "row": False}, render_mode="svg")
    flagged = data[data.flagged]
    if len(flagged):
        figure.add_trace(go.Scatter(
            x=flagged.x, y=flagged.y, mode="markers", name="likely mislabelled", customdata=flagged[["row"]],
            hovertext=flagged.source + " (" + flagged.reason + ")", hoverinfo="text",
            marker={"size": 14, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "black"}}))
    figure.update_layout(height=520, dragmode="lasso", legend_title_text="label", xaxis_title="", yaxis_title="",
                         margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return figure


def render_map(frame: pd.DataFrame) -> list[str]:
    """Draw the map; returns the manifest files of the points the user selected on it."""
    event = st.plotly_chart(map_figure(frame), on_select="rerun", selection_mode=("points", "box", "lasso"),
                            key=CHART, width="stretch")
    rows = sorted({int(point["customdata"][0]) for point in event.selection.get("points", [])
                   if point.get("customdata")})
    return frame.file.iloc[rows].tolist() if rows else []


def render_thumbnails(frame: pd.DataFrame, *, key: str, limit: int = THUMBNAILS) -> None:
    """Thumbnails of the rows, ``limit`` a page, with their (escaped) names and labels."""
    shown = page_of(list(frame.itertuples()), limit, key=key)
    st.image([row.path for row in shown], width=96,
             caption=[escape_markdown(f"{row.source} ({row.label})") for row in shown])


def render_flagged(frame: pd.DataFrame) -> None:
    """The likely mislabelled images: a table and their thumbnails."""
    flagged = frame[frame.flagged].sort_values(["neighbour_agreement", "source"])
    st.subheader(f"Likely mislabelled or outliers: {len(flagged)}")
    if flagged.empty:
        st.success("No image looks out of place: each sits among images of its own label.")
        return
    st.dataframe(flagged[["source", "label", "split", "reason", "neighbour_agreement"]], hide_index=True,
                 width="stretch", column_config={"neighbour_agreement": st.column_config.ProgressColumn(
                     "neighbours agreeing", min_value=0.0, max_value=1.0, format="percent")})
    render_thumbnails(flagged, key="explore_flagged_page")


def _choose(files: list[str]) -> None:
    st.session_state[CHOSEN] = list(dict.fromkeys(files))


def render_picker(dataset: Dataset, frame: pd.DataFrame | None, selected: list[str]) -> list[str]:
    """Fill the change list from the map, the flagged list or a duplicate group; returns the chosen files."""
    entries = {entry.file: entry for entry in dataset.entries}
    st.session_state[CHOSEN] = [f for f in st.session_state.get(CHOSEN, []) if f in entries]
    left, middle, right = st.columns(3)
    left.button(f"Use the map selection ({len(selected)})", disabled=not selected, on_click=_choose, args=(selected,))
    flagged = frame.file[frame.flagged].tolist() if frame is not None else []
    middle.button(f"Use the flagged images ({len(flagged)})", disabled=not flagged, on_click=_choose,
                  args=(flagged,))
    groups = dataset.summary.get("duplicates", [])
    if groups:
        index = right.selectbox("Duplicate group", range(len(groups)), key="explore_dup_group",
                                format_func=lambda i: f"{len(groups[i]['files'])} copies: "
                                                      f"{', '.join(groups[i]['kinds'])}")
        right.button("Use this duplicate group", on_click=_choose,
                     args=([item["file"] for item in groups[index]["files"]],))
    return st.multiselect("Images to change", list(entries), key=CHOSEN,
                          format_func=lambda f: f"{entries[f].source} ({entries[f].label}, {entries[f].split})")


def render_change_form(workspace, dataset: Dataset, chosen: list[str]) -> None:
    """Relabel or exclude the chosen images into a new version and switch to it."""
    action = st.radio("Change", ["Relabel", "Exclude"], horizontal=True, key="explore_action")
    label = None
    if action == "Relabel":
        label = st.selectbox("New label", list(dataset.classes), key="explore_label", accept_new_options=True,
                             help="Pick a class, or type a new class name.")
    note = st.text_input("Note (optional)", key="explore_note", placeholder="why, e.g. 'ant photo filed as bee'")
    if not st.button("Create a new version", type="primary", disabled=not chosen):
        return
    try:
        if action == "Relabel":
            version = create_version(workspace, dataset.id, relabel={f: label for f in chosen}, note=note)
        else:
            version = create_version(workspace, dataset.id, exclude=set(chosen), note=note)
    except StudioError as exc:
        st.error(escape_markdown(str(exc)))
        return
    st.session_state[NOTICE] = f"Created version {version.id} ({len(version.entries)} images); it is now current."
    st.session_state.pop(CHOSEN, None)
    st.session_state.pop(MAP, None)
    set_dataset_id(version.id)
    st.rerun()


def _last_family_run(workspace, family_ids: set[str], current_id: str) -> dict | None:
    for record in runs.list_runs(workspace):
        dataset_id = record.get("config", {}).get("dataset_id")
        if dataset_id in family_ids and dataset_id != current_id:
            return record
    return None


def render_versions(workspace, dataset: Dataset, manager_getter) -> None:
    """The versions of this dataset with what changed, and 'Repeat run on this version'."""
    family = list_versions(workspace, dataset.id)
    st.subheader("Versions")
    table = pd.DataFrame([{"current": item["id"] == dataset.id, "id": item["id"], "name": item["name"],
                           "images": item["images"], "made from": item["parent_id"] or "",
                           "what changed": item["description"], "created": item["created_at"]} for item in family])
    st.dataframe(table, hide_index=True, width="stretch")
    last = _last_family_run(workspace, {item["id"] for item in family}, dataset.id)
    if dataset.parent_id is None or last is None:
        st.caption("After you make a version, repeat a run on it here to compare with the original.")
        return
    st.caption(f"Repeat run {last['run_id']} ({last['config'].get('backbone')}, {last['config'].get('strategy')}) "
               f"on this version, with the same settings.")
    if st.button("Repeat run on this version"):
        try:
            run_id = manager_getter().submit(repeat_run_config(last, dataset.id))
        except StudioError as exc:
            st.error(escape_markdown(str(exc)))
            return
        set_run_id(run_id)
        st.switch_page("pages/train.py")


def render_downloads(workspace, dataset: Dataset, settings: dict) -> None:
    """CSV and NumPy downloads of the (cached) embeddings used by the map."""
    def found():
        return load_embeddings(workspace, dataset, settings["backbone"], image_size=settings["image_size"],
                               weights=settings["weights"])

    stem = f"{dataset.id}-{settings['backbone']}-{settings['image_size']}"
    left, right, _ = st.columns([1, 1, 2])
    left.download_button("Embeddings (CSV)", lambda: embeddings_csv(found()), file_name=f"{stem}.csv",
                         mime="text/csv", on_click="ignore")
    right.download_button("Embeddings (NumPy .npz)", lambda: embeddings_npz(found()), file_name=f"{stem}.npz",
                          mime="application/octet-stream", on_click="ignore")
    st.caption("One row per image: file, label, split and the pooled backbone features, ready for scikit-learn.")
