"""Train: pick a backbone and a strategy, start a background run, watch it live."""

import streamlit as st

from core.config import PRESETS, TrainConfig
from core.errors import StudioError
from core.models.backbones import get_backbone
from core.models.plan import plan_run
from core.models.speed import RUNTIME_NAMES
from core.speed_jobs import SpeedConfig
from ui import base_views, tool_job_views
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

try:  # the run's plan: backbone, size, weights, cache key (ImageNet weights are not downloaded while choosing)
    plan = plan_run(config, workspace, dataset=dataset, resolve=False)
except StudioError as exc:
    st.error(escape_markdown(str(exc)))
    st.stop()
size = plan.image_size
if config.weights == "imagenet" and config.strategy != "from-scratch":
    if plan.weights is not None:
        st.caption(f"Weights: {escape_markdown(plan.weights.description)}.")
    else:
        st.warning(f"ImageNet weights for {spec.display_name} at {size} px ({spec.weights_file(size)}) are not on "
                   "this machine; the run will try to download them and fail if it cannot. Pick another backbone, "
                   "place the file in the weights folder, or use from-scratch.")
estimate = plan.estimate(workspace, dataset)
left, right = st.columns([3, 1])
if estimate.seconds is None:
    extraction = estimate.extraction
    runtime = RUNTIME_NAMES[extraction.runtime if estimate.missing == "features" else "keras"]
    left.caption(f"Estimated time: not known yet: {spec.display_name} at {size} px has not been timed here "
                 f"with {runtime}, the runtime this run would use"
                 f"{' (' + escape_markdown(extraction.reason) + ')' if estimate.missing == 'features' else ' for training steps'}.")
    tool_job_views.measure_speed_control(workspace, SpeedConfig(  # a job: timing never blocks the page
        dataset.id, backbone, size, weights=config.weights,
        runtime=None if estimate.missing == "features" else "keras"), container=right)
else:
    measured = estimate.measured  # the figure the estimate rests on (with the features cached, any measured here)
    conversion = f"; includes converting to LiteRT first (about {estimate.extraction.conversion_estimate_s:.0f} s, " \
        "once per machine)" if estimate.converts_first else ""
    basis = [f"measured {measured.label} here on {escape_markdown(measured.measured_on or 'earlier runs')}"
             f"{conversion}"] if measured else []
    basis += ["image features already cached"] if estimate.features_cached else []
    left.caption(f"Estimated time: about {format_seconds(estimate.seconds)} ({'; '.join(basis)}).")

views.start_button(manager, config)

import ui.anatomy_views as anatomy_views  # noqa: E402  (issue 8 block, appended after the page's own flow)

anatomy_views.render_anatomy(plan, num_classes=len(dataset.classes))
