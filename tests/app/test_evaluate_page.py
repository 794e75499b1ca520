"""The Evaluate page in AppTest on one tiny finished run shared by the module."""

from __future__ import annotations

import streamlit as st

from core.insight.evaluation import evaluate_run
from core.workspace import WORKSPACE_ENV
from tests.app.conftest import open_page


def _table(at, column: str):
    return next(frame.value for frame in at.dataframe if column in frame.value.columns)


def test_evaluate_page_shows_accuracy_per_class_table_and_confusion_matrix(tiny_run):
    at = open_page("evaluate", run=tiny_run.run_id)
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == str(len(tiny_run.dataset.paths("val")))
    assert metrics["Accuracy"].endswith("%")
    table = _table(at, "precision")
    assert list(table["class"]) == list(tiny_run.dataset.classes)
    assert table["support"].sum() == len(tiny_run.dataset.paths("val"))
    assert [b.proto.label for b in at.get("download_button")] == ["Download report (HTML)"]
    assert len(at.get("plotly_chart")) == 3  # per-class bars, confusion matrix and accuracy vs threshold
    at.toggle(key="eval_normalized").set_value(True).run()
    assert not at.exception and len(at.get("plotly_chart")) == 3


def _captions(at) -> list[str]:
    return [caption for element in at.get("image") for caption in element.captions]


def test_picking_a_cell_with_the_selectboxes_shows_its_images(tiny_run):
    expected = evaluate_run(tiny_run.workspace, tiny_run.run_id, "val").records_in_cell("green", "green")
    assert expected, "the tiny run should get some green images right"
    at = open_page("evaluate", run=tiny_run.run_id)
    at.selectbox(key=f"eval_true_{tiny_run.run_id}").set_value("green")
    at.selectbox(key=f"eval_predicted_{tiny_run.run_id}").set_value("green").run()
    assert not at.exception and not at.error
    # Correct answers never appear among the mistakes, so these captions come from the cell gallery only.
    cell = [c.replace("\\", "") for c in _captions(at) if "true green, predicted green" in c.replace("\\", "")]
    sources = {str(tiny_run.dataset.root / e.file): e.source for e in tiny_run.dataset.entries}
    # Captioned with the path inside the user's upload, not the stored copy's name.
    assert sorted(c.split(":")[0] for c in cell) == sorted(sources[r["file"]] for r in expected)
    assert all(c.startswith("green/") for c in cell)


def test_a_pager_walks_through_every_item_with_a_count():
    from streamlit.testing.v1 import AppTest

    def script():
        import streamlit as st

        from ui.paging import page_of

        st.session_state["shown"] = page_of(list(range(30)), 12, key="pager")

    at = AppTest.from_function(script).run()
    assert at.session_state["shown"] == list(range(12))
    assert "Images 1-12 of 30 (page 1 of 3)." in [c.value for c in at.caption]
    at.number_input(key="pager").set_value(3).run()
    assert at.session_state["shown"] == list(range(24, 30))
    assert "Images 25-30 of 30 (page 3 of 3)." in [c.value for c in at.caption]


def test_evaluate_page_without_runs_says_to_train_first(tmp_path, monkeypatch):
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "empty"))
    st.cache_resource.clear()
    at = open_page("evaluate")
    assert "Train page" in at.info[0].value
    st.cache_resource.clear()


def _classifier_run(tiny_run) -> str:
    """A finished run whose model is a real Transfer Studio classifier (MobileNetV2, random init, 32 px)."""
    from core import runs
    from core.config import TrainConfig
    from core.models.backbones import get_backbone
    from core.models.classifier import build_classifier
    from core.models.weights import resolve_weights

    spec = get_backbone("mobilenet_v2")
    config = TrainConfig(dataset_id=tiny_run.dataset.id, image_size=32, weights="none")
    run_id = runs.create_run(tiny_run.workspace, config, classes=tiny_run.dataset.classes, status="done")
    model = build_classifier(spec, image_size=32, num_classes=len(tiny_run.dataset.classes),
                             weights=resolve_weights(spec, 32, "none"))
    model.save(runs.model_path(tiny_run.workspace, run_id))
    return run_id


def test_grad_cam_toggle_overlays_every_shown_image(tiny_run):
    run_id = _classifier_run(tiny_run)
    at = open_page("evaluate", run=run_id)
    plain = _captions(at)
    at.toggle(key="eval_gradcam").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert _captions(at) == plain and plain  # the same images, now drawn as Grad-CAM overlays
