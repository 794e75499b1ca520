"""Predict page helpers: the model to use, uploads to images, cached predictions, result rendering."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from core.data.sources import discard_spooled, spool_upload
from core.errors import StudioError
from core.models.prediction import UNKNOWN_LABEL, Predictor, results_csv, results_frame
from core.models.readers import read_zip_images
from core.workspace import Workspace
from ui import evaluate_views
from ui.text import escape_markdown

IMAGE_TYPES = ["jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"]
MAX_IMAGES = 500      # one batch request; more belongs in `python -m core predict`
MAX_DETAILED = 24     # images drawn one by one with their bars; the table lists all


@st.cache_resource(max_entries=2, show_spinner="Loading the bundle…")
def _bundle_predictor(digest: str, _data: bytes, _tmp_dir: str, name: str) -> Predictor:
    path = spool_upload(io.BytesIO(_data), Path(_tmp_dir), name)  # messages name the user's file
    try:
        return Predictor.from_bundle(path)
    finally:
        discard_spooled(path)


def bundle_predictor(workspace: Workspace, upload) -> tuple[Predictor, str]:
    """The model of an uploaded bundle zip (loaded once per content) and a cache key for it."""
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    workspace.tmp_dir.mkdir(parents=True, exist_ok=True)
    return _bundle_predictor(digest, data, str(workspace.tmp_dir), upload.name), f"bundle-{digest[:16]}"


def run_predictor(workspace: Workspace, run_id: str) -> tuple[Predictor, str]:
    space = hashlib.sha256(str(workspace.root).encode()).hexdigest()[:8]  # run ids are unique per workspace only
    return evaluate_views.run_predictor(workspace, run_id), f"run-{space}-{run_id}"


def collect_images(workspace: Workspace, uploads, photo) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
    """Uploaded images, images inside uploaded zips and the camera photo, as (name, bytes).

    At most ``MAX_IMAGES`` are read into memory; the others are counted, not read.

    Returns:
        The images and the (name, reason) of files that were skipped or left out.
    """
    images, skipped, left_out = [], [], 0
    for upload in uploads or []:
        room = MAX_IMAGES - len(images)
        if upload.name.lower().endswith(".zip"):
            try:
                found, junk, more = read_zip_images(upload, _tmp_dir(workspace), max_images=room)
            except StudioError as exc:
                skipped.append((upload.name, str(exc)))
                continue
            images += [(f"{upload.name}/{name}", data) for name, data in found]
            skipped += [(f"{upload.name}/{name}", reason) for name, reason in junk]
            left_out += more
        elif room > 0:
            images.append((upload.name, upload.getvalue()))
        else:
            left_out += 1
    if photo is not None:
        images.append(("camera photo", photo.getvalue()))
    if len(images) > MAX_IMAGES:
        left_out += len(images) - MAX_IMAGES
        images = images[:MAX_IMAGES]
    if left_out:
        skipped.append((f"{left_out} more images", f"only the first {MAX_IMAGES} are classified "
                        "here; use `python -m core predict` for larger batches"))
    return images, skipped


def _tmp_dir(workspace: Workspace) -> Path:
    workspace.tmp_dir.mkdir(parents=True, exist_ok=True)
    return workspace.tmp_dir


@st.cache_data(max_entries=32, show_spinner="Classifying…")
def _predict(model_key: str, digests: tuple[str, ...], _predictor: Predictor, _images) -> list[dict]:
    return _predictor.predict_images(_images, top_k=len(_predictor.classes), on_error="record")


def predict(predictor: Predictor, model_key: str, images: list[tuple[str, bytes]]) -> list[dict]:
    """Results of ``predictor.predict_images`` (all classes ranked), computed once per model and images."""
    digests = tuple(f"{name}:{hashlib.sha256(data).hexdigest()}" for name, data in images)
    return _predict(model_key, digests, predictor, [(name, _named_file(name, data)) for name, data in images])


def _named_file(name: str, data: bytes) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name  # error messages then name the file instead of "image"
    return handle


def with_threshold(results: list[dict], threshold: float, top_k: int) -> list[dict]:
    """Results cut to ``top_k`` classes, answering "unknown" when the top probability is under ``threshold``."""
    out = []
    for result in results:
        if result["error"]:
            out.append(result)
            continue
        unknown = result["probability"] < threshold
        out.append({**result, "top_k": result["top_k"][:top_k], "unknown": unknown,
                    "answer": UNKNOWN_LABEL if unknown else result["label"]})
    return out


def topk_figure(result: dict) -> go.Figure:
    """Horizontal bars of the top-k probabilities, most probable on top."""
    labels = [label for label, _ in result["top_k"]][::-1]
    probs = [prob for _, prob in result["top_k"]][::-1]
    figure = go.Figure(go.Bar(x=probs, y=labels, orientation="h", text=[f"{p:.1%}" for p in probs],
                              textposition="auto"))
    figure.update_layout(height=60 + 32 * len(labels), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    figure.update_xaxes(range=[0, 1], tickformat=".0%")
    figure.update_yaxes(type="category")
    return figure


@st.cache_data(max_entries=256, show_spinner=False)
def _gradcam(model_key: str, digest: str, class_name: str, _predictor: Predictor, _data: bytes):
    prepared = _predictor.prepare(_data)
    return evaluate_views.gradcam_overlay(_predictor.model, prepared, _predictor.classes.index(class_name))


def show_results(predictor: Predictor, model_key: str, images: list[tuple[str, bytes]], results: list[dict],
                 *, gradcam: bool) -> None:
    """Per image: the picture (or its Grad-CAM) and the top-k bars; then a table and a CSV download."""
    for result in results:
        if result["error"]:
            st.warning(f"{escape_markdown(result['file'])}: {escape_markdown(result['error'])}")
    good = [(index, data, r) for index, ((_, data), r) in enumerate(zip(images, results, strict=True))
            if not r["error"]]
    for index, data, result in good[:MAX_DETAILED]:
        picture, bars = st.columns([1, 2])
        image = data
        if gradcam:
            digest = hashlib.sha256(data).hexdigest()
            try:
                image = _gradcam(model_key, digest, result["label"], predictor, data)
            except StudioError as exc:
                st.error(escape_markdown(str(exc)))
                gradcam = False  # the same reason holds for every image of this model: say it once
        picture.image(image, caption=result["file"], width="stretch")
        bars.metric("Answer", result["answer"], help=f"Top probability {result['probability']:.1%}")
        bars.plotly_chart(topk_figure(result), key=f"topk_{model_key}_{index}")
    if len(good) > MAX_DETAILED:
        st.caption(f"Showing {MAX_DETAILED} of {len(good)} images one by one; the table lists them all.")
    if results:
        st.subheader("All results")
        st.dataframe(results_frame(results), hide_index=True, width="stretch")
        st.download_button("Download results (CSV)", results_csv(results), file_name="predictions.csv",
                           mime="text/csv", key="predict_csv")
