"""Predict: classify new images with the current run's model or an exported bundle."""

import streamlit as st

from core.errors import StudioError
from ui import evaluate_views
from ui import predict_views as views
from ui.state import get_run_id, get_workspace, set_run_id
from ui.text import escape_markdown

st.title("Predict")
workspace = get_workspace()

finished = [record["run_id"] for record in evaluate_views.finished_runs(workspace)]
sources = (["A run of this workspace"] if finished else []) + ["A bundle zip exported earlier"]
source = st.radio("Model", sources, horizontal=True, key="predict_source")
try:
    if source == sources[0] and finished:
        current = get_run_id()
        run_id = st.selectbox("Run", finished, index=finished.index(current) if current in finished else 0,
                              key="predict_run",
                              on_change=lambda: set_run_id(st.session_state["predict_run"]))
        if run_id != current:
            set_run_id(run_id)
        predictor, model_key = views.run_predictor(workspace, run_id)
    else:
        bundle = st.file_uploader("Model bundle (.zip from the Runs page or `python -m core export`)",
                                  type=["zip"], key="predict_bundle")
        if bundle is None:
            st.info("Upload a bundle zip to classify images with it." if finished else
                    "No trained model in this workspace yet: train one on the Train page, or upload a bundle.")
            st.stop()
        predictor, model_key = views.bundle_predictor(workspace, bundle)
except StudioError as exc:
    st.error(escape_markdown(str(exc)))
    st.stop()
st.caption(f"Classes: {escape_markdown(', '.join(predictor.classes))} · input {predictor.image_size} px ({predictor.resize})"
           f" · runs on {escape_markdown(predictor.runtime_description)}")

uploads = st.file_uploader("Images, or zips of images", type=views.IMAGE_TYPES + ["zip"],
                           accept_multiple_files=True, key="predict_images")
photo = st.camera_input("Photo", key="predict_camera") if st.toggle("Use the camera", key="predict_use_camera") \
    else None
images, skipped = views.collect_images(workspace, uploads, photo)
for name, reason in skipped:
    st.warning(f"Skipped {escape_markdown(name)}: {escape_markdown(reason)}")
if not images:
    st.info("Upload one or more images (or a zip of them), or take a photo.")
    st.stop()

left, middle, right = st.columns(3)
threshold = left.slider("Answer \"unknown\" below", 0.0, 1.0, 0.5, 0.05, key="predict_threshold",
                        help="When the top probability is under this value the answer is \"unknown\".")
top_k = middle.number_input("Classes per image", 1, len(predictor.classes), min(3, len(predictor.classes)),
                            key="predict_top_k")
gradcam = right.toggle("Show Grad-CAM", key="predict_gradcam", disabled=not evaluate_views.gradcam_available(),
                       help="Highlights the image regions that drove the answer.")

results = views.with_threshold(views.predict(predictor, model_key, images), threshold, int(top_k))
views.show_results(predictor, model_key, images, results, gradcam=gradcam)
