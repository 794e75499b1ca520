"""Explore page: the map renders for the sample dataset, and relabelling makes a new current version."""

from __future__ import annotations

from core.datasets import load_dataset
from tests.app.conftest import open_page


def test_map_renders_and_relabel_creates_a_current_version(app_workspace, sample_dataset, keras_home):
    from core.projection import load_embeddings

    load_embeddings(app_workspace, sample_dataset, "mobilenet_v2")  # what the features job leaves in the cache
    at = open_page("explore", timeout=180, dataset=sample_dataset.id)
    next(b for b in at.button if b.label == "Draw the map").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.get("plotly_chart"), "the embedding map is drawn"
    assert any(s.value.startswith("Likely mislabelled or outliers") for s in at.subheader)

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


def test_repeat_run_queues_the_last_runs_settings_on_the_version(app_workspace, sample_dataset):
    from core import runs
    from core.config import TrainConfig
    from core.versions import create_version

    config = TrainConfig(dataset_id=sample_dataset.id, image_size=96, weights="none", epochs=1, batch_size=64)
    original = runs.create_run(app_workspace, config, classes=sample_dataset.classes, status="done")
    version = create_version(app_workspace, sample_dataset.id, exclude={sample_dataset.entries[0].file})
    at = open_page("explore", timeout=180, dataset=version.id)
    next(b for b in at.button if b.label == "Repeat run on this version").click().run()
    assert not at.exception, [e.value for e in at.exception]

    repeated = runs.load_run(app_workspace, at.session_state["run"])
    assert repeated["run_id"] != original
    assert repeated["config"] == {**config.to_dict(), "dataset_id": version.id}
