"""Teachable Machine in the browser: the import box of the Runs page and the class matching on Evaluate."""

from __future__ import annotations

import io
import shutil
import zipfile

import pytest

from tests.app.conftest import open_page
from tests.teachable_runs import KERAS_DIR, TFJS_CLASSES, TFJS_DIR, imported_runs, require_exports


def _zip(folder, names, *, truncate=None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            data = (folder / name).read_bytes()
            archive.writestr(f"tm-my-image-model/{name}", data[:truncate] if name == "weights.bin" else data)
    return buffer.getvalue()


class _Upload:
    def __init__(self, name, data):
        self.name, self._data = name, data

    def getvalue(self):
        return self._data


def test_importing_a_tfjs_zip_on_the_runs_page_makes_a_run(app_workspace):
    from core import runs

    require_exports()
    at = open_page("runs")
    data = _zip(TFJS_DIR, ("model.json", "weights.bin", "metadata.json"))
    at.file_uploader(key="import_files").set_value([("tm-my-image-model.zip", data, "application/zip")])
    at.text_input(key="import_name").input("leaves").run()
    at.button(key="import_button").click().run(timeout=300)
    assert not at.exception and not at.error, [e.value for e in at.error]
    records = runs.list_runs(app_workspace)
    assert len(records) == 1 and records[0]["classes"] == TFJS_CLASSES and records[0]["name"] == "leaves"
    assert any(records[0]["run_id"] in s.value for s in at.success)
    assert records[0]["run_id"] in at.dataframe[0].value["run"].tolist()


def test_a_truncated_upload_is_refused_with_an_error_and_no_run(app_workspace):
    from core import runs

    require_exports()
    at = open_page("runs")
    data = _zip(TFJS_DIR, ("model.json", "weights.bin", "metadata.json"), truncate=5000)
    at.file_uploader(key="import_files").set_value([("tm-my-image-model.zip", data, "application/zip")]).run()
    at.button(key="import_button").click().run()
    assert not at.exception
    assert "truncated" in at.error[0].value and "tm\\-my\\-image\\-model\\.zip" in at.error[0].value
    assert runs.list_runs(app_workspace) == []


def test_loose_uploads_renamed_by_the_browser_are_recognised_by_kind():
    from core.delivery.teachable import read_export
    from ui.import_views import export_files

    require_exports()
    uploads = [_Upload("keras_model (1).h5", (KERAS_DIR / "keras_model.h5").read_bytes()),
               _Upload("labels (1).txt", (KERAS_DIR / "labels.txt").read_bytes())]
    assert read_export(export_files(uploads)).classes == ("cardboard", "plastic", "glass", "metal")
    uploads = [_Upload(name, (TFJS_DIR / name).read_bytes()) for name in ("metadata.json", "model.json")]
    files = export_files(uploads + [_Upload("weights (2).bin", (TFJS_DIR / "weights.bin").read_bytes())])
    assert read_export(files).classes == tuple(TFJS_CLASSES)


@pytest.fixture
def imported_workspace(app_workspace, tmp_path_factory):
    """The app's workspace holding a copy of the imported TF.js run."""
    source = imported_runs(tmp_path_factory)
    shutil.copytree(source.workspace.runs_dir / source.tfjs_run, app_workspace.runs_dir / source.tfjs_run)
    return source.tfjs_run


def test_evaluate_asks_to_confirm_class_pairs_that_differ_in_case_then_scores(app_workspace, imported_workspace,
                                                                              tmp_path):
    from core.data.datasets import ingest
    from tests.factories import make_class_folders

    source = make_class_folders(tmp_path / "leaves", per_class=5, size=48, classes=("red", "green"))
    (source / "red").rename(source / "Diseased_Leaves")
    (source / "green").rename(source / "Healthy Leaves")
    dataset = ingest(source, app_workspace, val_fraction=0.4, seed=0)
    at = open_page("evaluate", timeout=300, run=imported_workspace)
    assert not at.metric, "no score before the pairs are confirmed"
    pairs = [box for box in at.selectbox if box.key and box.key.startswith("eval_map_")]
    assert [box.value for box in pairs] == TFJS_CLASSES
    at.checkbox(key=f"eval_map_ok_{imported_workspace}_{dataset.id}").check().run(timeout=300)
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Images"] == "10" and metrics["Accuracy"].endswith("%")


def test_the_train_page_shows_an_imported_current_run_without_an_error(app_workspace, imported_workspace,
                                                                         sample_dataset):
    at = open_page("train", run=imported_workspace, dataset=sample_dataset.id)
    assert not at.exception and not at.error
    assert any("Imported model" in s.value for s in at.success)


def test_the_predict_page_answers_with_an_imported_run_as_the_export_s_runtime_does(app_workspace,
                                                                                   imported_workspace, tmp_path):
    import json
    from pathlib import Path

    from tests.teachable_runs import real_photos

    reference = json.loads((Path(__file__).resolve().parents[1] / "data" / "teachable" /
                            "leaves_tfjs_reference.json").read_text(encoding="utf-8"))
    photo = real_photos(tmp_path, [reference["images"][0]["zip_member"]])[0]
    at = open_page("predict", timeout=300, run=imported_workspace)
    at.file_uploader(key="predict_images").set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    at.toggle(key="predict_gradcam").set_value(True).run(timeout=300)
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = next(frame.value for frame in at.dataframe if "answer" in frame.value.columns)
    expected = reference["probabilities"][0]
    assert table.loc[0, "label"] == TFJS_CLASSES[expected.index(max(expected))]
    assert abs(table.loc[0, "probability"] - max(expected)) < 1e-4
    assert any("crop-lanczos" in c.value for c in at.caption)


def test_importing_beside_earlier_runs_opens_the_imported_run(app_workspace, tmp_path_factory):
    from core import runs

    source = imported_runs(tmp_path_factory)
    shutil.copytree(source.workspace.runs_dir / source.keras_run, app_workspace.runs_dir / source.keras_run)
    at = open_page("runs")
    assert at.selectbox(key="runs_single").value == source.keras_run
    data = _zip(TFJS_DIR, ("model.json", "weights.bin", "metadata.json"))
    at.file_uploader(key="import_files").set_value([("tm-my-image-model.zip", data, "application/zip")]).run()
    at.button(key="import_button").click().run(timeout=300)
    assert not at.exception and not at.error, [e.value for e in at.error]
    new_run = next(r["run_id"] for r in runs.list_runs(app_workspace) if r["run_id"] != source.keras_run)
    assert at.selectbox(key="runs_single").value == new_run
    assert at.multiselect(key="runs_compare").value == [new_run]
