"""Explore page: the map renders for the sample dataset, and relabelling makes a new current version."""

from __future__ import annotations

import os

from core import runs
from core.data.datasets import load_dataset
from core.jobs import process_start_time
from core.map_jobs import MapConfig
from core.workspace import atomic_write_json
from tests.app.conftest import open_page


def test_map_renders_and_relabel_creates_a_current_version(app_workspace, sample_dataset, keras_home,
                                                            jobs_in_process):
    from core.insight.projection import load_embeddings

    load_embeddings(app_workspace, sample_dataset, "mobilenet_v2")  # what the features job leaves in the cache
    at = open_page("explore", timeout=180, dataset=sample_dataset.id)
    next(b for b in at.button if b.label == "Draw the map").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.get("plotly_chart"), "the embedding map is drawn"
    assert any(s.value.startswith("Likely mislabelled or outliers") for s in at.subheader)
    job = runs.list_runs(app_workspace, kind="embedding-map")[0]  # drawn by a job, off the page's thread
    assert job["status"] == "done" and job["config"]["dataset_id"] == sample_dataset.id
    refreshed = open_page("explore", timeout=180, dataset=sample_dataset.id)
    assert refreshed.get("plotly_chart") and not [b for b in refreshed.button if b.label == "Draw the map"]

    moved = next(e.file for e in sample_dataset.entries if e.label == "circles")
    at.multiselect(key="explore_chosen").set_value([moved])
    at.radio(key="explore_action").set_value("Relabel")
    at.selectbox(key="explore_label").set_value("squares").run()
    next(b for b in at.button if b.label == "Create a new version").click().run()
    assert not at.exception, [e.value for e in at.exception]

    new_id = at.session_state["dataset"]
    assert new_id != sample_dataset.id
    version = load_dataset(app_workspace, new_id)
    assert version.parent_id == sample_dataset.id
    assert {e.file: e.label for e in version.entries}[moved] == "squares"
    assert any("Created version" in s.value for s in at.success)
    assert new_id in at.dataframe[-1].value["id"].tolist()


def test_without_cached_features_the_page_offers_the_background_job_instead_of_the_map(app_workspace,
                                                                                      sample_dataset, keras_home):
    at = open_page("explore", timeout=180, dataset=sample_dataset.id)
    assert [b for b in at.button if b.label == "Compute the image features"]
    assert not [b for b in at.button if b.label == "Draw the map"]


def _map_job(workspace, dataset, status: str, **fields) -> str:
    if status == "running":
        fields = {"pid": os.getpid(), "pid_started": process_start_time(os.getpid()), **fields}
    config = MapConfig(dataset.id, "mobilenet_v2", 224, "imagenet", "pca", None)  # the page's default settings
    return runs.create_run(workspace, config, classes=dataset.classes, status=status,
                           run_id=runs.new_run_id("embedding-map"), **fields)


def test_a_map_job_in_progress_shows_the_images_embedded_and_stop(app_workspace, sample_dataset, keras_home):
    from core.insight.projection import load_embeddings

    load_embeddings(app_workspace, sample_dataset, "mobilenet_v2")
    job_id = _map_job(app_workspace, sample_dataset, "running")
    atomic_write_json(runs.run_dir(app_workspace, job_id) / "progress.json",
                      {"stage": "features", "batch": 64, "of": 200, "eta": 12.0})
    at = open_page("explore", timeout=180, dataset=sample_dataset.id)
    assert "Computing image features (cached after the first time): 64 of 200 images, ETA 12 s" in \
        at.get("progress")[0].proto.text
    assert not [b for b in at.button if b.label == "Draw the map"] and not at.get("plotly_chart")
    next(b for b in at.button if b.label == "Stop").click().run()
    assert runs.stop_requested(runs.run_dir(app_workspace, job_id))
    runs.update_run(app_workspace, job_id, status="stopped", error=MapConfig.stopped_message)
    at = open_page("explore", timeout=180, dataset=sample_dataset.id)
    assert any("The last map stopped: Stopped before the map was drawn" in w.value.replace("\\", "")
               for w in at.warning)
    assert [b for b in at.button if b.label == "Draw the map"]


def test_repeat_run_queues_the_last_runs_settings_on_the_version(app_workspace, sample_dataset):
    from core import runs
    from core.config import TrainConfig
    from core.data.versions import create_version

    config = TrainConfig(dataset_id=sample_dataset.id, image_size=96, weights="none", epochs=1, batch_size=64)
    original = runs.create_run(app_workspace, config, classes=sample_dataset.classes, status="done")
    version = create_version(app_workspace, sample_dataset.id, exclude={sample_dataset.entries[0].file})
    at = open_page("explore", timeout=180, dataset=version.id)
    next(b for b in at.button if b.label == "Repeat run on this version").click().run()
    assert not at.exception, [e.value for e in at.exception]

    repeated = runs.load_run(app_workspace, at.session_state["run"])
    assert repeated["run_id"] != original
    assert repeated["config"] == {**config.to_dict(), "dataset_id": version.id}
