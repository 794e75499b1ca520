"""Widgets of the Train page: backbone table, settings form, live view of a run."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import runs
from core.config import PRESETS, SETTINGS
from core.data.roles import format_headline
from core.errors import StudioError
from core.models.backbones import BACKBONES
from core.models.speed import RUNTIME_NAMES, expected_speed
from core.models.weights import weights_available
from core.run_state import RunSnapshot, RunStatus
from core.training.continuation import accuracy_before, format_before
from ui.jobs import format_seconds, get_manager
from ui.live_runs import LiveRun, live_runs
from ui.state import get_workspace, set_run_id
from ui.text import escape_markdown

STRATEGY_HELP = {
    "feature-extraction": "Keep the pretrained network frozen and train only a small classifier on the features it "
                          "computes. Fastest; best for small datasets of everyday-looking photos (close to ImageNet).",
    "fine-tune": "First train the classifier as in feature extraction, then unfreeze the top layers of the network and "
                 "train them gently at a very low learning rate. Slower; gains accuracy with more data or with images "
                 "unlike everyday photos (scans, microscopy, drawings).",
    "from-scratch": "Start from random weights and train the whole network. The baseline that shows what transfer "
                    "learning buys you: expect it to do much worse on small datasets.",
}
# The settings of the Advanced expander; their defaults, choices, ranges and help are TrainConfig's (SETTINGS).
ADVANCED = ("head", "epochs", "fine_tune_epochs", "batch_size", "learning_rate", "fine_tune_learning_rate", "dropout",
            "hidden_units", "augment", "class_weights", "early_stopping_patience", "seed", "weights", "distribution",
            "resize")
DEFAULTS = {name: SETTINGS[name].default for name in ADVANCED}
# Set by the "Train on N workers" box (shown only when the server lists workers), not offered in the Devices list.
PAGE_SET_DISTRIBUTIONS = ("multi-worker",)
# persist_state of every Train setting. Streamlit drops the state of a widget that a script run does not draw: the
# Train page draws no settings while a run is live, other pages draw none, so a second Start trained with other
# settings than those chosen. "session" keeps each widget's value while it is not drawn, across pages too.
KEEP = "session"
LIVE_POLL_S = 1.0
STOP_LABEL = "Stop training"
STOPPING = "Stopping… the run ends after the current batch and keeps the best model so far."


def backbone_table(workspace, num_images: int = 0) -> pd.DataFrame:
    """One row per registry backbone, with the speed of the runtime a run would use and its weights here."""
    rows = []
    for name, spec in BACKBONES.items():
        _, best = expected_speed(workspace, name, spec.default_size, num_images=num_images)
        rows.append({
            "backbone": name, "name": spec.display_name, "parameters (M)": round(spec.params / 1e6, 1),
            "size (MB)": spec.size_mb, "input size": spec.default_size, "ImageNet top-1": spec.top1,
            "speed here (img/s)": f"{best.images_per_s:.0f} ({RUNTIME_NAMES[best.runtime]})" if best
            else "not measured", "ImageNet weights here": weights_available(spec, spec.default_size),
            "good for": spec.guidance,
        })
    return pd.DataFrame(rows)


def extraction_line(extraction: dict, timings: dict) -> str:
    """Which runtime computed the image features of a run, how fast, and what the conversion cost."""
    runtime = RUNTIME_NAMES.get(extraction.get("runtime"), extraction.get("runtime") or "Keras")
    if extraction.get("cached"):
        return f"Image features: reused from the cache (computed earlier with {runtime})."
    threads = f", {extraction['threads']} threads" if extraction.get("threads") else ""
    speed = f" at {extraction['images_per_s']:.0f} images/s" if extraction.get("images_per_s") else ""
    conversion = extraction.get("conversion_s") or 0.0
    paid = f"; conversion to LiteRT {conversion:.1f} s (once per machine)" if conversion else ""
    if extraction.get("workers"):
        speed += f", split over {extraction['workers']} workers (the chief embedded {extraction.get('worker_images')})"
    return (f"Image features: {runtime}{threads}{speed}, {format_seconds(timings.get('features_s'))} in all{paid}. "
            f"{extraction.get('reason') or ''}").strip()


def apply_preset() -> None:
    """on_change of the preset picker: copy the preset's values into the settings widgets."""
    preset = PRESETS.get(st.session_state.get("train_preset"), {})
    for key, value in {**DEFAULTS, **preset}.items():
        st.session_state[f"train_{key}"] = value


def init_settings() -> None:
    for key, value in {**DEFAULTS, "strategy": SETTINGS["strategy"].default,
                       "backbone": SETTINGS["backbone"].default}.items():
        st.session_state.setdefault(f"train_{key}", value)


def setting_help(name: str, note: str = "") -> str:
    """The help of TrainConfig's field ``name`` with its default, as a sentence, and the page's ``note``."""
    described = SETTINGS[name].describe()
    return f"{described[0].upper()}{described[1:]}.{' ' + note if note else ''}"


def choice_box(column, name: str, label: str, options=None):
    """A selectbox of TrainConfig's field ``name``: its declared choices (or ``options``), its help."""
    return column.selectbox(label, list(options or SETTINGS[name].choices), key=f"train_{name}",
                            persist_state=KEEP, help=setting_help(name))


def number_box(column, name: str, label: str, **options):
    """A number input of TrainConfig's field ``name``, bounded by its declared range, with its help."""
    low, high = SETTINGS[name].range
    return column.number_input(label, low, high, key=f"train_{name}", persist_state=KEEP, help=setting_help(name),
                               **options)


def render_advanced(spec) -> dict:
    """The Advanced expander: every setting the engine takes. Returns TrainConfig keyword arguments."""
    s = st.session_state
    sizes = list(spec.allowed_sizes)
    if s.get("train_image_size") not in sizes:
        s["train_image_size"] = spec.default_size
    with st.expander("Advanced settings"):
        a, b, c = st.columns(3)
        a.selectbox("Input size (px)", sizes, key="train_image_size", persist_state=KEEP,
                    help="The sizes this backbone has weights for.")
        choice_box(a, "resize", "Resize")
        number_box(a, "batch_size", "Batch size")
        choice_box(a, "head", "Head")
        number_box(b, "epochs", "Epochs (phase 1, Keras)")
        number_box(b, "fine_tune_epochs", "Fine-tuning epochs")
        b.number_input("Layers to unfreeze (0 = all)", 0, SETTINGS["fine_tune_layers"].range[1], value=0,
                       key=f"train_fine_tune_layers_{spec.name}", persist_state=KEEP,
                       help=setting_help("fine_tune_layers", "0 here: the whole backbone."))
        number_box(c, "learning_rate", "Learning rate (empty: automatic)", format="%.5f", placeholder="automatic")
        number_box(c, "fine_tune_learning_rate", "Fine-tuning learning rate", format="%.7f")
        low, high = SETTINGS["dropout"].range
        c.slider("Dropout", low, high, key="train_dropout", persist_state=KEEP, help=setting_help("dropout"))
        number_box(a, "hidden_units", "Hidden units in the head (0 = none)")
        b.checkbox("Augment training images", key="train_augment", persist_state=KEEP, help=setting_help("augment"))
        choice_box(b, "class_weights", "Class weights")
        number_box(c, "early_stopping_patience", "Early stopping patience (0 = off)")
        number_box(c, "seed", "Seed")
        choice_box(a, "weights", "Weights")
        choice_box(b, "distribution", "Devices", [mode for mode in SETTINGS["distribution"].choices
                                                  if mode not in PAGE_SET_DISTRIBUTIONS])
    keys = [key for key in DEFAULTS] + ["image_size"]
    values = {key: s[f"train_{key}"] for key in keys}
    values["fine_tune_layers"] = int(s[f"train_fine_tune_layers_{spec.name}"]) or None
    for key in ("epochs", "fine_tune_epochs", "batch_size", "hidden_units", "early_stopping_patience", "seed",
                "image_size"):
        values[key] = int(values[key])
    return values


def workers_option() -> str | None:
    """``multi-worker`` when the server lists worker machines and the person ticks "Train on N workers"."""
    from core.errors import ConfigError
    from core.training.cluster import WORKERS_ENV, configured_workers

    try:
        workers = configured_workers()
    except ConfigError as exc:
        st.warning(f"Training across workers is off: {escape_markdown(str(exc))}")
        return None
    if not workers:
        return None
    chosen = st.checkbox(f"Train on {len(workers)} workers", key="train_on_workers", persist_state=KEEP,
                         help=f"This server and the machines in {WORKERS_ENV} ({', '.join(workers)}) train the run "
                              "together; each must run `python -m core worker --join N` on the shared workspace. "
                              "The batch size is split evenly over them.")
    return "multi-worker" if chosen else None


def strategy_picker() -> str:
    strategy = st.radio("Strategy", SETTINGS["strategy"].choices, key="train_strategy", persist_state=KEEP,
                        horizontal=True)
    st.caption(STRATEGY_HELP[strategy])
    return strategy


def live_run(run_id: str) -> None:
    """Status, progress with ETA, curves and Stop of one run.

    While the run is queued or training this is a fragment that reruns every ``LIVE_POLL_S``; each rerun
    takes the server-wide look at the run (``ui.live_runs``): its files are re-read, and its curves rebuilt,
    only when one changed, once for every tab watching it. A finished run is drawn once, with no polling at all.
    """
    run = look_at_run(run_id)
    if run is not None and run.is_active:
        hide_script_stop()
        st.fragment(_live_view, run_every=LIVE_POLL_S)(run_id)
    else:
        _live_view(run_id)


def look_at_run(run_id: str) -> LiveRun | None:
    """The run as every tab watching it sees it now (shared: never change it); None when there is no such run."""
    try:
        folder = runs.run_dir(get_workspace(), run_id)
    except StudioError:  # a malformed id (typed into the URL)
        return None
    return live_runs().look(folder)


def hide_script_stop() -> None:
    """Hide Streamlit's own running indicator and its Stop (it stops a page script, never the training), so the
    one Stop on screen while a run is live is the run's own."""
    st.html("<style>[data-testid='stStatusWidget']{display:none !important}</style>")


def _live_view(run_id: str) -> None:
    run = look_at_run(run_id)
    if run is None:
        st.warning(f"Run {run_id} no longer exists.")
        return
    was_active = st.session_state.get(f"live_active_{run_id}")
    st.session_state[f"live_active_{run_id}"] = run.is_active
    if was_active and not run.is_active:
        st.rerun(scope="app")  # the run ended: a full run draws it once more, without polling
    render_status(run_id, run, run.folder)
    render_start(run.record)
    if run.history:
        full = st.toggle("Full range (accuracy 0 to 1, loss from 0)", key=f"full_range_{run_id}")
        loss, accuracy = live_runs().curves(run, full_range=full)
        left, right = st.columns(2)
        left.vega_lite_chart(loss, key=f"loss_{run_id}")
        right.vega_lite_chart(accuracy, key=f"acc_{run_id}")


def render_honesty(record: dict) -> None:
    """Where the headline comes from, what chose what, and the head candidates with their scores."""
    roles = record.get("roles") or {}
    if roles:
        st.caption(f"The headline accuracy is measured on the {roles['headline_split']} split, which chose "
                   f"nothing; epochs and weights were chosen on: {roles['selection']}.")
    if record.get("cv_estimate"):
        st.caption(f"Small data, so also: the chosen head cross-validated over every image gives "
                   f"{format_headline(record['cv_estimate'])}.")
    selection = record.get("head_selection")
    if selection:
        st.markdown(f"**Head chosen by {selection['folds']}-fold cross-validation** on "
                    f"{selection['fit_images']} training images: `{selection['chosen']}`")
        st.caption("The simplest candidate whose cross-validated accuracy is within one standard error of the best "
                   "(on small data the top score is partly luck; among those level with it, the simplest is the "
                   "safer choice).")
        st.dataframe(pd.DataFrame(selection["candidates"], columns=["name", "accuracy", "std", "seconds"]),
                     hide_index=True, key=f"heads_{record['run_id']}",
                     column_config={"accuracy": st.column_config.NumberColumn("cross-validated accuracy",
                                                                              format="%.4f")})


def render_start(record: dict) -> None:
    """For a run that continues an earlier model: which one, and its accuracy before (marked on the chart)."""
    continued = record.get("continued_from")
    if not continued:
        return
    before = accuracy_before(record)
    measured = f"{format_before(before)} of dataset {before['dataset_id']}" if before else \
        "its accuracy before is measured on this dataset's validation images first"
    st.caption(escape_markdown(f"Continues run {continued['run_id']}: {measured}."))


def render_status(run_id: str, run: RunSnapshot, folder=None) -> None:
    """What the run is doing (queue position, progress and ETA, result or error) and, while it is live, its Stop.
    ``folder``: the run's folder, when the caller has it (a live view polls this every second)."""
    status, record = run.status, run.record
    stopping = run.is_active and runs.stop_requested(folder or runs.run_dir(get_workspace(), run_id))
    if status == RunStatus.QUEUED:
        manager = get_manager()
        running, queued = manager.server_counts()
        st.info(f"Waiting in the queue: position {manager.queue_position(run_id) or '?'} of {queued} "
                f"({running} running, at most {manager.max_jobs} at once).")
    elif status == RunStatus.RUNNING and stopping:
        st.info(STOPPING)
    elif status == RunStatus.RUNNING:
        render_position(run)
    elif status == RunStatus.DONE and record.get("imported_from"):
        st.success("Imported model, ready: evaluate it on a dataset, use it in Predict, or export it on the Runs "
                   "page, or continue it on a dataset with the same classes: *Start from → Continue one of my runs* on the Train page "
                   "(`python -m core train DATASET --continue RUN_ID`).")
    elif status == RunStatus.DONE:
        st.success(f"Finished in {format_seconds(record['timings'].get('total_s'))}: accuracy "
                   f"{format_headline(record.get('headline'))}.")
        render_honesty(record)
        st.caption(escape_markdown(f"Weights: {record.get('weights')}. Model: {record.get('model_path')}"))
        if record.get("extraction"):
            st.caption(escape_markdown(extraction_line(record["extraction"], record.get("timings") or {})))
    elif status == RunStatus.STOPPED:
        st.warning(f"Stopped. {escape_markdown(run.error or 'The best model so far was kept.')}")
    else:
        st.error(f"Run {record.get('status')}: {escape_markdown(run.error)}")
        if run.error_details:
            with st.expander("Details"):
                st.code(run.error_details)
    if run.is_active:
        st.button(STOP_LABEL, key=f"stop_{run_id}", type="secondary", disabled=stopping, on_click=_stop,
                  args=(run_id,), help="Ends the run after the current batch and keeps the best model so far.")


def render_position(run: RunSnapshot) -> None:
    """A training run's stage, and within it the epoch, the batch and the ETA of the whole run."""
    label = {"features": "Computing image features (once per dataset and backbone)"}.get(run.stage, run.stage)
    if run.in_phase:
        label = f"{run.stage}: epoch {run.epoch or 1} of {run.total_epochs or '?'}"
    if run.fraction is not None:
        st.progress(run.fraction, text=f"{label}: batch {run.batch} of {run.of}, ETA {format_seconds(run.eta)}")
    else:
        st.progress(0.0, text=f"{label}…")


def _stop(run_id: str) -> None:
    get_manager().stop(run_id)


def start_button(manager, config, *, key: str | None = None, disabled: bool = False, fields: dict | None = None):
    """The "Start training" button: queue ``config`` (with extra run-record ``fields``) and open the new run, or
    show why it cannot be queued."""
    if not st.button("Start training", type="primary", key=key, disabled=disabled):
        return
    try:
        new_run = manager.submit(config, fields=fields)
    except StudioError as exc:
        st.error(escape_markdown(str(exc)))
    else:
        set_run_id(new_run)
        st.rerun()
