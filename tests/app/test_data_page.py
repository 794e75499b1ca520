"""The Data page in AppTest: sample dataset, upload (good and bad zips), reopen and delete."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.core.test_ingest_support import class_files, make_zip

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 120


@pytest.fixture
def app(app_workspace):
    """The app switched to the Data page, on a private workspace (see tests/app/conftest.py)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/data.py").run()
    assert not at.exception
    return at


def _current(at) -> str:
    value = at.query_params.get("dataset", "")
    return value[0] if isinstance(value, list) else value


def _table(at, column: str):
    """The first dataframe shown with ``column`` (AppTest does not expose dataframe keys)."""
    for frame in at.dataframe:
        value = frame.value
        if column in value.columns or value.index.name == column:
            return value
    raise AssertionError(f"no table with column {column!r}")


def _texts(at) -> str:
    return "\n".join([t.value for t in at.text] + [m.value for m in at.markdown])


def test_sample_dataset_shows_chart_tables_and_thumbnails(app):
    app.button(key="data_sample").click().run()
    assert not app.exception and not app.error
    assert _current(app).startswith("sample-shapes-")
    charts = app.get("plotly_chart")
    assert len(charts) == 2  # counts per class and split, image sizes
    counts = _table(app, "class")
    assert counts.loc["circles"].tolist() == [40, 10]
    assert len(app.get("image")) == 4  # one thumbnail strip per class
    assert "circles  (50 images)" in _texts(app)


def test_uploading_a_good_zip_makes_it_the_current_dataset(app, tmp_path):
    data = make_zip(tmp_path / "pets.zip", {**class_files(per_class=5), "cats/empty.jpg": b""}).read_bytes()
    app.file_uploader(key="data_upload").set_value(("pets.zip", data, "application/zip")).run()
    assert not app.exception and not app.error
    assert _current(app).startswith("pets-")
    rejected = _table(app, "reason")
    assert rejected.to_dict("records") == [{"file": "cats/empty.jpg", "reason": "empty file (0 bytes)"}]


def test_uploading_a_bad_zip_shows_an_error_and_no_exception(app, tmp_path):
    bad = make_zip(tmp_path / "one.zip", class_files(classes=("cats",))).read_bytes()
    app.file_uploader(key="data_upload").set_value(("one.zip", bad, "application/zip")).run()
    assert not app.exception
    assert "need at least 2" in app.error[0].value
    app.run()  # a later rerun keeps showing the error without ingesting again
    assert "need at least 2" in app.error[0].value and not app.exception
    app.file_uploader(key="data_upload").set_value(("x.zip", b"<html>not a zip</html>", "application/zip")).run()
    assert not app.exception
    assert "not a readable zip file" in app.error[0].value
    assert app.info[0].value.startswith("Upload a zip")


def test_a_broken_upload_is_named_by_the_users_file_name(app, app_workspace):
    app.file_uploader(key="data_upload").set_value(("holiday photos (2).zip", b"just text", "application/zip")).run()
    message = app.error[0].value.replace("\\", "")  # shown with markdown escaped
    assert "'holiday photos (2).zip' is not a readable zip file" in message
    assert "upload-" not in message
    assert list(app_workspace.tmp_dir.iterdir()) == []  # the server's copy is gone


def test_datasets_can_be_reopened_and_deleted_with_confirmation(app, tmp_path):
    data = make_zip(tmp_path / "pets.zip", class_files()).read_bytes()
    app.file_uploader(key="data_upload").set_value(("pets.zip", data, "application/zip")).run()
    app.button(key="data_sample").click().run()
    pets = next(option for option in app.selectbox(key="data_pick").options if option.startswith("pets"))
    app.selectbox(key="data_pick").set_value(pets).run()
    app.button(key="data_open").click().run()
    assert _current(app).startswith("pets-")
    app.button(key="data_delete").click().run()
    assert app.warning and not app.exception
    app.button(key="data_delete_yes").click().run()
    assert not app.exception
    assert "dataset" not in app.query_params
    assert all(not option.startswith("pets") for option in app.selectbox(key="data_pick").options)


def test_file_names_in_error_messages_are_shown_literally(app, tmp_path):
    bad = make_zip(tmp_path / "one.zip", class_files(classes=("**bold** :red[x]",))).read_bytes()
    app.file_uploader(key="data_upload").set_value(("one.zip", bad, "application/zip")).run()
    assert r"\*\*bold\*\* \:red\[x\]" in app.error[0].value and not app.exception
