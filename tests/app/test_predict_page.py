"""The Predict page in AppTest (AppTest 1.67 drives st.file_uploader) on one tiny finished run."""

from __future__ import annotations

import io
import zipfile

from streamlit.testing.v1 import AppTest

from tests.app.conftest import open_page


def _predict_page(run_id: str) -> AppTest:
    return open_page("predict", run=run_id)


def _results(at):
    return next(frame.value for frame in at.dataframe if "answer" in frame.value.columns)


def _shown(element) -> str:
    """The text a person reads (markdown escapes removed)."""
    return element.value.replace("\\", "")


def _red_image(tiny_run) -> bytes:
    return (tiny_run.source / "red" / "red_000.png").read_bytes()


def test_uploaded_images_get_answers_bars_and_a_per_file_message_for_a_broken_one(tiny_run):
    at = _predict_page(tiny_run.run_id)
    at.file_uploader(key="predict_images").set_value([
        ("red.png", _red_image(tiny_run), "image/png"),
        ("broken.jpg", b"this is not a picture", "image/jpeg"),
    ]).run()
    assert not at.exception, [e.value for e in at.exception]
    table = _results(at)
    assert list(table["file"]) == ["red.png", "broken.jpg"]
    assert table.loc[0, "label"] in tiny_run.dataset.classes and table.loc[0, "error"] == ""
    assert "'broken.jpg'" in table.loc[1, "error"]
    assert any(_shown(w).startswith("broken.jpg:") for w in at.warning)
    assert len(at.get("plotly_chart")) == 1  # top-k bars for the readable image only
    assert at.get("download_button")


def test_a_threshold_above_the_top_probability_answers_unknown(tiny_run):
    at = _predict_page(tiny_run.run_id)
    at.file_uploader(key="predict_images").set_value(("red.png", _red_image(tiny_run), "image/png")).run()
    at.slider(key="predict_threshold").set_value(1.0).run()
    assert not at.exception
    assert list(_results(at)["answer"]) == ["unknown"]


def test_a_zip_of_images_is_classified_image_by_image(tiny_run):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("red/red_001.png", "green/green_001.png"):
            archive.write(tiny_run.source / name, name)
        archive.writestr("notes.txt", "not an image")
    at = _predict_page(tiny_run.run_id)
    at.file_uploader(key="predict_images").set_value(("batch.zip", buffer.getvalue(), "application/zip")).run()
    assert not at.exception
    assert sorted(_results(at)["file"]) == ["batch.zip/green/green_001.png", "batch.zip/red/red_001.png"]
    assert any("notes.txt" in _shown(w) for w in at.warning)
