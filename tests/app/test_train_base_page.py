"""The Train page's base picker: a model file brought in the browser, then that run as the base of another."""

from __future__ import annotations

from tests.app.conftest import open_page, rerun_until
from tests.core.test_base_models import _functional_file


def _texts(at) -> str:
    return " | ".join(str(e.value) for e in (*at.success, *at.warning, *at.error, *at.info))


def _upload(at, path):
    at.file_uploader(key="train_base_upload").set_value((path.name, path.read_bytes(), "application/octet-stream"))
    at.run()


def test_a_model_file_uploaded_on_the_train_page_is_the_base_of_a_run_and_that_run_of_the_next(sample_dataset,
                                                                                                  tmp_path):
    from core import runs
    from core.workspace import Workspace

    at = open_page("train", dataset=sample_dataset.id)
    at.radio(key="train_base_source").set_value("A model file").run()
    _upload(at, _functional_file(tmp_path / "colleague.keras"))
    assert not at.exception and not at.error, _texts(at)
    base_id = at.selectbox(key="train_base_file").value
    cut = at.selectbox(key=f"train_base_cut_{base_id}")
    assert cut.value == "gap" and "embed (None, 8)" in cut.options
    assert at.radio(key=f"train_base_scaling_{base_id}").value == "raw"  # it has a Rescaling layer of its own
    cut.set_value("embed").run()
    at.selectbox(key="train_head").set_value("linear").run()
    next(b for b in at.button if b.label == "Start training").click()
    at.run()
    at = rerun_until(at, lambda at: "Finished" in _texts(at))
    first = runs.list_runs(Workspace.open())[0]
    assert first["base"]["kind"] == "file" and first["base"]["cut_layer"] == "embed"

    at = open_page("train", dataset=sample_dataset.id)
    at.radio(key="train_base_source").set_value("One of my runs").run()
    assert at.selectbox(key="train_base_run").value == first["run_id"]
    assert any(f"run {first['run_id']}" in c.value.replace("\\", "") for c in at.caption)
    next(b for b in at.button if b.label == "Start training").click()
    at.run()
    at = rerun_until(at, lambda at: "Finished" in _texts(at))
    second = runs.list_runs(Workspace.open())[0]
    assert second["base"]["kind"] == "run" and second["base"]["run_id"] == first["run_id"]
    assert second["status"] == "done"


def test_a_model_file_with_a_lambda_layer_is_refused_on_the_page(sample_dataset, tmp_path):
    from core.models.base_files import list_stored_bases
    from core.workspace import Workspace

    at = open_page("train", dataset=sample_dataset.id)
    at.radio(key="train_base_source").set_value("A model file").run()
    _upload(at, _functional_file(tmp_path / "lambda.keras", lam=True))
    assert not at.exception
    assert "contains a Lambda layer" in " ".join(e.value for e in at.error).replace("\\", "")
    assert list_stored_bases(Workspace.open()) == []
    assert not any(b.label == "Start training" for b in at.button)
