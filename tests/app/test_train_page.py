"""The Train page: a tiny run shows curves and finishes; Stop ends one; a job error is shown."""

from __future__ import annotations

import pytest

from core.models.speed import RUNTIME_NAMES
from tests.app.conftest import open_page, rerun_until


def _texts(at) -> str:
    parts = [e.value for e in (*at.success, *at.warning, *at.error, *at.info)]
    return " | ".join(str(p) for p in parts)


def _configure(at, **values):
    at.selectbox(key="train_weights").set_value(values.pop("weights", "none"))
    at.selectbox(key="train_head").set_value(values.pop("head", "keras"))
    at.selectbox(key="train_image_size").set_value(96)
    at.number_input(key="train_batch_size").set_value(16)
    at.number_input(key="train_early_stopping_patience").set_value(0)
    for key, value in values.items():
        widget = at.radio(key=f"train_{key}") if key == "strategy" else at.number_input(key=f"train_{key}")
        widget.set_value(value)
    at.run()


def _start(at):
    next(b for b in at.button if b.label == "Start training").click()
    at.run()


def test_a_tiny_run_shows_curves_and_finishes(sample_dataset):
    at = open_page("train", dataset=sample_dataset.id)
    _configure(at, epochs=3, head="auto")
    _start(at)
    at = rerun_until(at, lambda at: "Finished" in _texts(at))
    assert len(at.get("vega_lite_chart")) >= 2
    assert "on val (" in _texts(at) and "95% CI" in _texts(at)
    assert any("Head chosen by" in m.value for m in at.markdown)
    candidates = next(d.value for d in at.dataframe if "accuracy" in d.value.columns and "std" in d.value.columns)
    assert {"linear C=0.1", "mlp 256, dropout 0.5"} <= set(candidates["name"])
    captions = " | ".join(c.value for c in at.caption).replace("\\", "")  # captions are markdown-escaped
    # which runtime computed them (Keras, or LiteRT once this process has converted the backbone), and why
    assert any(f"Image features: {name}" in captions for name in RUNTIME_NAMES.values())
    at.run(timeout=300)
    captions = " | ".join(c.value for c in at.caption).replace("\\", "")
    assert "Estimated time: about" in captions and "image features already cached" in captions
    assert any(f"images/s with {name}" in captions for name in RUNTIME_NAMES.values())


def test_measure_speed_times_this_dataset_on_the_runtime_the_run_would_use(app_workspace, sample_dataset,
                                                                           jobs_in_process):
    from core import runs
    from core.tool_jobs import load_result

    at = open_page("train", dataset=sample_dataset.id)
    _configure(at, epochs=3)
    captions = " | ".join(c.value for c in at.caption)
    assert "not known yet" in captions and "with Keras (TensorFlow)" in captions
    next(b for b in at.button if b.label == "Measure speed").click()
    at.run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    captions = " | ".join(c.value for c in at.caption)
    assert "images/s with Keras (TensorFlow) here on 48 images of" in captions  # 64 sampled, 16 warm up
    job = runs.list_runs(app_workspace, kind="speed")[0]  # timed by a job, off the page's thread
    assert job["status"] == "done" and load_result(app_workspace, job["run_id"])["runtime"] == "keras"


def test_a_running_speed_measurement_shows_its_progress_in_place_of_the_button(app_workspace, sample_dataset):
    import os

    from core import runs
    from core.jobs import process_start_time
    from core.speed_jobs import SpeedConfig
    from core.workspace import atomic_write_json

    at = open_page("train", dataset=sample_dataset.id)
    _configure(at, epochs=3)
    workspace = app_workspace
    config = SpeedConfig(sample_dataset.id, "mobilenet_v2", 96, weights="none")  # as the page would queue it
    job_id = runs.create_run(workspace, config, classes=sample_dataset.classes, status="running",
                             run_id=runs.new_run_id("speed"), pid=os.getpid(),
                             pid_started=process_start_time(os.getpid()))
    atomic_write_json(runs.run_dir(workspace, job_id) / "progress.json", {"stage": "timing", "batch": 1, "of": 3})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [b for b in at.button if b.label == "Measure speed"]
    assert "Timing batches of this dataset's images: 1 of 3 batches" in at.get("progress")[0].proto.text
    runs.update_run(workspace, job_id, status="failed", error="No images could be read for timing.")
    at.run()
    assert [b for b in at.button if b.label == "Measure speed"]  # the job ended: the button is back, with why
    assert "No images could be read for timing\\." in _texts(at)


def test_stop_ends_a_running_job(sample_dataset):
    at = open_page("train", dataset=sample_dataset.id)
    _configure(at, epochs=500)
    _start(at)
    at = rerun_until(at, lambda at: any(b.label == "Stop training" for b in at.button) and at.get("vega_lite_chart"))
    assert any("stStatusWidget" in h.proto.body for h in at.get("html"))  # Streamlit's own Stop is hidden
    next(b for b in at.button if b.label == "Stop training").click().run()
    assert any(i.value.startswith("Stopping") for i in at.info), _texts(at)  # in the click's own rerun
    stop = [b for b in at.button if b.label == "Stop training"]
    assert len(stop) == 1 and stop[0].disabled
    at = rerun_until(at, lambda at: "Stopped" in _texts(at), timeout=120)


def test_missing_weights_are_refused_before_a_run_and_the_form_keeps_its_values(sample_dataset):
    from core import runs
    from core.workspace import Workspace

    at = open_page("train", dataset=sample_dataset.id)
    at.selectbox(key="train_backbone").set_value("efficientnet_b0").run()
    at.selectbox(key="train_image_size").set_value(128)
    at.number_input(key="train_epochs").set_value(7)
    at.run()
    _start(at)  # no weights file here and no network: refused at once, in the click's own run
    message = " ".join(e.value for e in at.error).replace("\\", "")  # shown with markdown escaped
    assert "efficientnetb0_notop.h5" in message
    assert runs.list_runs(Workspace.open()) == []  # no failed run left behind
    assert at.number_input(key="train_epochs").value == 7
    assert at.selectbox(key="train_backbone").value == "efficientnet_b0"


def test_a_second_session_waits_in_the_queue_and_shows_its_place(sample_dataset):
    first = open_page("train", dataset=sample_dataset.id)
    _configure(first, epochs=500)
    _start(first)
    second = open_page("train", dataset=sample_dataset.id)
    _configure(second, epochs=2)
    _start(second)
    assert any("position 1 of 1" in info.value for info in second.info), _texts(second)
    next(b for b in first.button if b.label == "Stop training").click()
    first.run()
    rerun_until(second, lambda at: "Finished" in _texts(at))


CHOSEN = {"train_image_size": 96, "train_batch_size": 16, "train_epochs": 2, "train_early_stopping_patience": 0,
          "train_weights": "none", "train_head": "keras", "train_resize": "pad", "train_strategy": "fine-tune",
          "train_fine_tune_epochs": 1, "train_fine_tune_layers_mobilenet_v2": 4, "train_dropout": 0.5}


def _choose(at) -> None:
    """Settings unlike every default, each in its widget as a person sets it."""
    at.radio(key="train_preset").set_value("Best accuracy").run()  # strategy fine-tune, as the e2e walk does
    for key, value in CHOSEN.items():
        kind = {"train_dropout": "slider", "train_strategy": "radio"}.get(key)
        widget = at.slider(key=key) if kind == "slider" else at.radio(key=key) if kind == "radio" else \
            at.selectbox(key=key) if isinstance(value, str) or key == "train_image_size" else at.number_input(key=key)
        widget.set_value(value)
    at.run()


def _shown(at) -> dict:
    kinds = {"train_dropout": at.slider, "train_strategy": at.radio}
    return {key: (kinds.get(key) or (at.selectbox if isinstance(value, str) or key == "train_image_size"
                                     else at.number_input))(key=key).value for key, value in CHOSEN.items()}


def _through_app(page: str, **session):
    """The app through app.py (its door and sidebar, as served), first on its default page, then on ``page``."""
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP

    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_settings_survive_a_visit_to_another_page(sample_dataset, through_app_py):
    at = _through_app("train", dataset=sample_dataset.id)
    _choose(at)
    assert _shown(at) == CHOSEN
    at.switch_page("pages/data.py").run()
    at.switch_page("pages/evaluate.py").run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert _shown(at) == CHOSEN
    assert at.radio(key="train_preset").value == "Best accuracy"


def test_a_second_start_after_a_finished_run_uses_the_chosen_settings(sample_dataset, through_app_py):
    from core import runs
    from core.workspace import Workspace

    at = _through_app("train", dataset=sample_dataset.id)
    _choose(at)
    _start(at)  # the page shows the live run and none of the settings until it ends
    at = rerun_until(at, lambda at: "Finished" in _texts(at))
    assert _shown(at) == CHOSEN
    first = runs.list_runs(Workspace.open())
    _start(at)
    second = [r for r in runs.list_runs(Workspace.open()) if r["run_id"] != first[0]["run_id"]]
    assert len(first) == 1 and len(second) == 1, _texts(at)
    assert second[0]["config"] == first[0]["config"]
    assert (second[0]["config"]["image_size"], second[0]["config"]["weights"]) == (96, "none")
    rerun_until(at, lambda at: "Finished" in _texts(at))


def test_stop_before_the_first_fine_tune_batch_says_stopping_at_once(sample_dataset, through_app_py):
    """Phase 2 entered, its first step (tracing the whole network) not done: no batch reported yet."""
    import os

    from core import runs
    from core.config import TrainConfig
    from core.jobs import process_start_time
    from core.workspace import Workspace, atomic_write_json

    workspace = Workspace.open()
    run_id = runs.create_run(workspace, TrainConfig(dataset_id=sample_dataset.id, weights="none",
                                                    strategy="fine-tune"),
                             classes=sample_dataset.classes, status="running", pid=os.getpid(),
                             pid_started=process_start_time(os.getpid()))
    atomic_write_json(runs.run_dir(workspace, run_id) / "progress.json",
                      {"stage": "phase 2", "epoch": 2, "total_epochs": 11, "phase_started_epoch": 2})
    at = _through_app("train", dataset=sample_dataset.id, run=run_id)
    assert any("phase 2: epoch 2 of 11" in p.text for p in at.get("progress")), _texts(at)
    next(b for b in at.button if b.label == "Stop training").click().run()
    assert any(i.value.startswith("Stopping") for i in at.info), _texts(at)
    assert not at.get("progress")  # no line that still reads as training on
    assert runs.stop_requested(runs.run_dir(workspace, run_id))


def test_the_features_line_says_when_the_pass_was_split_over_workers():
    from ui.train_views import extraction_line

    line = extraction_line({"runtime": "keras", "images_per_s": 480.0, "workers": 2, "worker_images": 1000},
                           {"features_s": 4.2})
    assert "480 images/s, split over 2 workers (the chief embedded 1000)" in line
    assert "split" not in extraction_line({"runtime": "keras", "images_per_s": 480.0}, {"features_s": 4.2})


def test_the_settings_offer_exactly_what_train_config_declares(sample_dataset):
    """Defaults, choices and ranges of the Advanced settings are TrainConfig's (``core.config.SETTINGS``)."""
    from core.config import SETTINGS
    from ui.train_views import DEFAULTS, PAGE_SET_DISTRIBUTIONS

    at = open_page("train", dataset=sample_dataset.id)
    assert not at.exception, [e.value for e in at.exception]
    for name in ("resize", "head", "class_weights", "weights"):
        assert tuple(at.selectbox(key=f"train_{name}").options) == SETTINGS[name].choices, name
    devices = tuple(at.selectbox(key="train_distribution").options)
    assert devices == tuple(m for m in SETTINGS["distribution"].choices if m not in PAGE_SET_DISTRIBUTIONS)
    assert tuple(at.radio(key="train_strategy").options) == SETTINGS["strategy"].choices
    for name in ("batch_size", "epochs", "fine_tune_epochs", "learning_rate", "fine_tune_learning_rate",
                 "hidden_units", "early_stopping_patience", "seed"):
        widget = at.number_input(key=f"train_{name}")
        assert (widget.proto.min, widget.proto.max) == pytest.approx(SETTINGS[name].range), name
    dropout = at.slider(key="train_dropout")
    assert (dropout.proto.min, dropout.proto.max) == pytest.approx(SETTINGS["dropout"].range)
    layers = at.number_input(key="train_fine_tune_layers_mobilenet_v2")
    assert layers.proto.max == SETTINGS["fine_tune_layers"].range[1] and layers.value == 0  # 0 here: all
    assert DEFAULTS == {name: SETTINGS[name].default for name in DEFAULTS}
    shown = {name: at.session_state[f"train_{name}"] for name in (*DEFAULTS, "strategy", "backbone")}
    assert shown == {name: SETTINGS[name].default for name in shown}
    assert SETTINGS["batch_size"].help[1:] in at.number_input(key="train_batch_size").proto.help
