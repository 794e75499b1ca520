"""Evaluate page helpers: cached evaluation and models, plotly figures, image galleries with Grad-CAM."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import runs
from core.errors import StudioError
from core.insight.evaluation import EvaluationResult, evaluate_run
from core.models.prediction import Predictor
from core.workspace import Workspace
from ui.paging import page_of
from ui.text import escape_markdown

SPLIT_NAMES = {"val": "validation", "test": "test", "all": "dataset", "train": "training"}


def split_label(split: str, record: dict) -> str:
    """A split's name, marked when it is the run's headline (images that chose nothing)."""
    headline = (record.get("headline") or {}).get("split")
    return f"{SPLIT_NAMES[split]} (headline: chose nothing)" if split == headline else SPLIT_NAMES[split]


def split_caption(split: str, record: dict, low: float, high: float) -> str:
    """What these images did in training, so a person knows how far to trust the accuracy."""
    roles = record.get("roles") or {}
    interval = f"95% interval {low:.1%} to {high:.1%}."
    if roles.get("headline_split") == split:
        return f"These images chose nothing in training: this is the honest figure. {interval}"
    if roles.get("selection") == "val" and split == "val":
        return (f"These images chose the epochs and best weights, so this figure is optimistic; the test split "
                f"is the honest one. {interval}")
    return interval
GALLERY_COLUMNS = 4


def finished_runs(workspace: Workspace) -> list[dict]:
    """Records of runs that saved a model, newest first."""
    return [r for r in runs.list_runs(workspace)
            if r.get("status") not in runs.ACTIVE_STATUSES and runs.model_path(workspace, r["run_id"]).exists()]


def _model_stamp(workspace: Workspace, run_id: str) -> float:
    """Changes when a run's model file changes, so caches keyed by it never serve a stale model."""
    path = runs.model_path(workspace, run_id)
    return path.stat().st_mtime if path.exists() else 0.0


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _run_predictor(root: str, run_id: str, stamp: float) -> Predictor:
    return Predictor.from_run(Workspace.open(root), run_id)


def run_predictor(workspace: Workspace, run_id: str) -> Predictor:
    """The run's model, loaded once per server (read-only afterwards)."""
    return _run_predictor(str(workspace.root), run_id, _model_stamp(workspace, run_id))


@st.cache_data(max_entries=16, show_spinner="Running the model over the images…")
def _evaluation(root: str, run_id: str, split: str, stamp: float, dataset_id: str | None = None,
                pairs: tuple = ()) -> EvaluationResult:
    workspace = Workspace.open(root)
    return evaluate_run(workspace, run_id, split, predictor=_run_predictor(root, run_id, stamp),
                        dataset_id=dataset_id, class_mapping=dict(pairs) if dataset_id else None)


def evaluation(workspace: Workspace, run_id: str, split: str, dataset_id: str | None = None,
               mapping: dict | None = None) -> EvaluationResult:
    """Metrics of a run on a split (of its own dataset, or of ``dataset_id`` through ``mapping``), computed once
    per (run, split, model file, dataset, mapping)."""
    return _evaluation(str(workspace.root), run_id, split, _model_stamp(workspace, run_id), dataset_id,
                       tuple(sorted((mapping or {}).items())))


def confusion_figure(result: EvaluationResult, *, normalized: bool = False) -> go.Figure:
    """Heatmap of counts (true classes down, predicted across) with a clickable point on each cell.

    With ``normalized`` each row is divided by its class's images, so a cell reads "share of this class's images
    predicted as that class" (the diagonal is each class's recall) and a small class weighs as much as a large one.
    Plotly heatmaps send no selection events to Streamlit, so an invisible scatter marker sits on
    every cell; clicking a cell selects its marker, whose x / y are the predicted / true class.
    """
    classes = list(result.classes)
    counts = np.asarray(result.confusion)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    z = shares if normalized else counts
    figure = go.Figure(go.Heatmap(z=z, x=classes, y=classes, colorscale="Blues", showscale=False,
                                  hoverinfo="skip", zmin=0, zmax=1 if normalized else None))
    xs = [c for _ in classes for c in classes]
    ys = [t for t in classes for _ in classes]
    flat = z.reshape(-1)
    dark = flat > 0.5 * (1 if normalized else max(1, int(flat.max())))  # white numbers on the dark cells
    text = [f"{v:.0%}" for v in flat] if normalized else [str(v) for v in flat]
    figure.add_scatter(
        x=xs, y=ys, mode="markers+text", text=text, customdata=counts.reshape(-1),
        textfont={"size": 14, "color": ["white" if d else "#1c2333" for d in dark]},
        marker={"symbol": "square", "size": max(18, 240 // max(1, len(classes))), "color": "rgba(0,0,0,0)"},
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} images<extra></extra>", showlegend=False,
    )
    title = "Confusion matrix, share of each true class (click a cell)" if normalized \
        else "Confusion matrix (click a cell)"
    figure.update_layout(height=max(320, 60 * len(classes) + 120), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         title=title, clickmode="event+select", dragmode=False)
    # Fixed ranges: the markers would otherwise pad the category axes and shrink the cells.
    figure.update_xaxes(title="predicted", type="category", range=[-0.5, len(classes) - 0.5])
    figure.update_yaxes(title="true", type="category", range=[len(classes) - 0.5, -0.5])
    return figure


def per_class_figure(result: EvaluationResult) -> go.Figure:
    """Precision and recall of every class as grouped horizontal bars (worst recall at the top)."""
    rows = sorted(result.per_class, key=lambda row: row["recall"], reverse=True)
    classes = [row["class"] for row in rows]
    figure = go.Figure()
    for metric, colour in (("recall", "#2f6fde"), ("precision", "#9bb7ec")):
        figure.add_bar(y=classes, x=[row[metric] for row in rows], name=metric, orientation="h",
                       marker_color=colour, text=[f"{row[metric]:.2f}" for row in rows], textposition="auto")
    figure.update_layout(title="Precision and recall per class", barmode="group",
                         height=max(260, 44 * len(classes) + 120), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         legend={"orientation": "h", "y": -0.2})
    figure.update_xaxes(range=[0, 1.02])
    figure.update_yaxes(type="category")
    return figure


def selected_cell(event, classes) -> tuple[str, str] | None:
    """(true, predicted) of the clicked confusion-matrix cell, if any."""
    selection = getattr(event, "selection", None) or {}
    points = selection.get("points") or []
    for point in points:
        true, predicted = point.get("y"), point.get("x")
        if true in classes and predicted in classes:
            return str(true), str(predicted)
    return None


def threshold_figure(result: EvaluationResult) -> go.Figure:
    """Accuracy on the kept answers and coverage, as the confidence threshold rises."""
    rows = result.thresholds
    xs = [row["threshold"] for row in rows]
    figure = go.Figure()
    figure.add_scatter(x=xs, y=[row["accuracy"] for row in rows], mode="lines+markers", name="accuracy")
    figure.add_scatter(x=xs, y=[row["coverage"] for row in rows], mode="lines+markers", name="coverage",
                       line={"dash": "dot"})
    figure.update_layout(title="Accuracy vs confidence threshold", height=360, xaxis_title="threshold",
                         margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25})
    figure.update_yaxes(range=[0, 1.02])
    return figure


def per_class_table(result: EvaluationResult):
    frame = result.per_class_frame()
    return frame.round({"precision": 3, "recall": 3, "f1": 3})


def gradcam_available() -> bool:
    return importlib.util.find_spec("core.insight.gradcam") is not None


def gradcam_overlay(model, prepared: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM heatmap of ``class_index`` blended over the prepared image, as uint8 RGB."""
    from core.insight.gradcam import compute_gradcam, overlay_heatmap

    heatmap, _, _ = compute_gradcam(model, prepared, class_index=class_index)
    return np.asarray(overlay_heatmap(prepared, heatmap), dtype=np.uint8)


@st.cache_data(max_entries=512, show_spinner=False)
def _file_gradcam(root: str, run_id: str, stamp: float, file: str, class_name: str) -> np.ndarray:
    predictor = _run_predictor(root, run_id, stamp)
    return gradcam_overlay(predictor.model, predictor.prepare(file), predictor.classes.index(class_name))


def show_gallery(workspace: Workspace, run_id: str, records: list[dict], *, gradcam: bool, limit: int,
                 empty: str, key: str) -> None:
    """Images of ``records`` in a grid, a page of ``limit`` at a time, captioned with the name the user gave each
    image, its true / predicted label and probability (the stored file in the image's tooltip column below)."""
    if not records:
        st.caption(empty)
        return
    stamp = _model_stamp(workspace, run_id)
    shown = page_of(records, limit, key=key)
    columns = st.columns(GALLERY_COLUMNS)
    for position, record in enumerate(shown):
        name = record.get("name") or Path(record["file"]).name
        caption = escape_markdown(f"{name}: true {record['true']}, predicted {record['predicted']} "
                                  f"({record['confidence']:.0%})")
        with columns[position % GALLERY_COLUMNS]:
            image = record["file"]
            if gradcam:
                try:
                    image = _file_gradcam(str(workspace.root), run_id, stamp, record["file"], record["predicted"])
                except StudioError as exc:
                    st.error(escape_markdown(str(exc)))
                    gradcam = False  # the same reason holds for every image of this model: say it once
            st.image(image, caption=caption, width="stretch")

