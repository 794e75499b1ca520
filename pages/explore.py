"""Explore & clean: see the data through the model's eyes, fix labels into a new version, retrain."""

import streamlit as st

from core.health_jobs import features_ready
from ui import explore_views as views
from ui import health_views
from ui.jobs import get_manager
from ui.state import get_workspace, require_dataset

st.title("Explore & clean data")
st.caption("Each dot is one image, placed by what the pretrained model sees in it: similar images sit together. "
           "Ringed dots sit among images of another label (or the trained model gets them wrong): check them, "
           "then relabel or exclude them. The original dataset is never changed; you get a new version.")
workspace = get_workspace()
notice = st.session_state.pop(views.NOTICE, None)
if notice:
    st.success(notice)

dataset = require_dataset()
st.caption(f"Dataset {views.escape_markdown(dataset.name)} ({dataset.id}): {len(dataset.entries)} images in {len(dataset.classes)} classes.")

settings = views.map_settings(workspace, dataset)
config = views.map_config(settings)
latest, finished = views.map_jobs(workspace, config)
frame = views.current_map(workspace, dataset, finished)
job = health_views.active_job(workspace, dataset)
drawing = False
if job is not None:
    health_views.live_job(job["run_id"])
elif settings["weights"] == "imagenet" and not features_ready(workspace, dataset, settings["backbone"],
                                                                settings["image_size"]):
    health_views.start_button(dataset, "Compute the image features", key="explore_features",
                              backbone=settings["backbone"], image_size=settings["image_size"])
else:
    drawing = views.render_map_job(latest, config, drawn=frame is not None)

selected: list[str] = []
if frame is not None:
    selected = views.render_map(frame)
    if selected:
        st.subheader(f"Selected on the map: {len(selected)}")
        views.render_thumbnails(frame[frame.file.isin(selected)], key="explore_selected_page")
    views.render_flagged(frame)
elif job is None and not drawing:
    st.info("Press **Draw the map** (a background job: you can leave the page). The image features are computed "
            "once, in a background job that also runs the health check (**Compute the image features**).")

health_views.render_review(workspace, dataset)

st.subheader("Relabel or exclude")
chosen = views.render_picker(dataset, frame, selected)
views.render_change_form(workspace, dataset, chosen)
views.render_versions(workspace, dataset, get_manager)

if frame is not None:
    st.subheader("Download the embeddings")
    views.render_downloads(workspace, dataset, settings)
