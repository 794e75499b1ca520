"""Train: pick a backbone and a strategy, start a background run, watch it live."""

import streamlit as st

from core.backbones import get_backbone
from core.config import PRESETS, TrainConfig
from core.errors import StudioError
from core.features import cached_features, feature_key
from core.speed import RUNTIME_NAMES, estimate_seconds, expected_speed, measure_speed, speed_figures
from core.weights import resolve_weights, weights_available
from ui import base_views
from ui import train_views as views
from ui.jobs import format_seconds, get_manager
from ui.state import get_run_id, get_workspace, require_dataset
from ui.text import escape_markdown

st.title("Train")
workspace = get_workspace()
manager = get_manager()

run_id = get_run_id()
current = views.look_at_run(run_id) if run_id else None
if current and current.is_active:
    st.subheader(f"Run {run_id}")
    views.live_run(run_id)
    st.stop()

dataset = require_dataset()

if current:
    with st.container(border=True):
        st.subheader(f"Last run: {run_id}")
        views.live_run(run_id)
        left, right, _ = st.columns([1, 1, 3])
        if left.button("Open in Evaluate", disabled=not current.has_result):
            st.switch_page("pages/evaluate.py")
        if right.button("Open in Predict", disabled=not current.has_result):
            st.switch_page("pages/predict.py")

st.caption(f"Dataset **{escape_markdown(dataset.name)}**: {len(dataset.entries)} images in "
           f"{len(dataset.classes)} classes ({escape_markdown(', '.join(dataset.classes))}).")
views.init_settings()
if base_views.render_base_flow(workspace, dataset, manager):  # a run or a model file as the base: its own form
    st.stop()

st.subheader("1. Backbone")
st.dataframe(views.backbone_table(workspace, len(dataset.entries)), hide_index=True, width="stretch")
backbone = st.selectbox("Backbone", list(views.BACKBONES), key="train_backbone", persist_state=views.KEEP,
                        help="MobileNetV2 is the recommended default: fast on a CPU and accurate on small data.")
spec = get_backbone(backbone)
st.caption(f"{spec.display_name}: {spec.guidance} ImageNet top-1 {spec.top1:.3f}, {spec.params / 1e6:.1f} M parameters, "
           f"{spec.default_size} px input.")

st.subheader("2. Strategy")
st.radio("Preset", list(PRESETS), key="train_preset", persist_state=views.KEEP, horizontal=True, index=None,
         on_change=views.apply_preset,
         help="Quick: a linear head on cached features. Balanced: cross-validation also tries a hidden-layer head. "
              "Best accuracy: adds fine-tuning of the whole network.")
strategy = views.strategy_picker()
settings = views.render_advanced(spec)
settings["distribution"] = views.workers_option() or settings["distribution"]

try:
    config = TrainConfig(dataset_id=dataset.id, backbone=backbone, strategy=strategy, **settings)
except StudioError as exc:
    st.error(escape_markdown(str(exc)))
    st.stop()

size = config.image_size
if config.weights == "imagenet" and config.strategy != "from-scratch":
    if weights_available(spec, size):
        st.caption(f"Weights: ImageNet, found on this machine ({spec.weights_file(size)}).")
    else:
        st.warning(f"ImageNet weights for {spec.display_name} at {size} px ({spec.weights_file(size)}) are not on "
                   "this machine; the run will try to download them and fail if it cannot. Pick another backbone, "
                   "place the file in the weights folder, or use from-scratch.")
num_images = len(dataset.entries)
plan, figure = expected_speed(workspace, backbone, size, weights=config.weights, num_images=num_images)
keras_figure = speed_figures(workspace, backbone, size).get("keras")
fingerprint = "none" if config.weights == "none" else None
if fingerprint is None and weights_available(spec, size):
    fingerprint = resolve_weights(spec, size, "imagenet").fingerprint
cached = bool(fingerprint) and cached_features(
    workspace, feature_key(dataset.id, backbone, size, config.resize, fingerprint, seed=config.seed)) is not None
uses_features = config.strategy != "from-scratch" and not config.augment
uses_keras = config.strategy != "feature-extraction" or config.augment
missing = "features" if uses_features and not cached and figure is None else \
    "keras" if uses_keras and keras_figure is None else None
estimate = None if missing else estimate_seconds(
    config, images_per_s=keras_figure.images_per_s if keras_figure else None,
    num_train=len(dataset.split_entries("train")), num_total=num_images, features_cached=cached,
    features_images_per_s=figure.images_per_s if figure else None,
    conversion_s=plan.conversion_estimate_s if plan.convert_now else 0.0)
left, right = st.columns([3, 1])
if estimate is None:
    runtime = RUNTIME_NAMES[plan.runtime if missing == "features" else "keras"]
    left.caption(f"Estimated time: not known yet: {spec.display_name} at {size} px has not been timed here "
                 f"with {runtime}, the runtime this run would use"
                 f"{' (' + escape_markdown(plan.reason) + ')' if missing == 'features' else ' for training steps'}.")
    if right.button("Measure speed"):
        with st.spinner(f"Timing {spec.display_name} with {runtime} on images of this dataset…"):
            measure_speed(workspace, backbone, size, dataset=dataset, weights=config.weights,
                          runtime=None if missing == "features" else "keras")
        st.rerun()
else:
    # The figure the estimate rests on; with the features cached none is needed, so show any measured here.
    measured = figure if uses_features and figure else keras_figure or next(
        iter(speed_figures(workspace, backbone, size).values()), None)
    conversion = f"; includes converting to LiteRT first (about {plan.conversion_estimate_s:.0f} s, once per " \
        "machine)" if plan.convert_now and uses_features and not cached else ""
    basis = [f"measured {measured.label} here on {escape_markdown(measured.measured_on or 'earlier runs')}"
             f"{conversion}"] if measured else []
    basis += ["image features already cached"] if cached else []
    left.caption(f"Estimated time: about {format_seconds(estimate)} ({'; '.join(basis)}).")

views.start_button(manager, config)

import ui.anatomy_views as anatomy_views  # noqa: E402  (issue 8 block, appended after the page's own flow)

anatomy_views.render_anatomy(config, num_classes=len(dataset.classes))
