"""The whole walk in a real browser: a broken upload, sample data (paging a gallery), quick training, a fine-tune
run stopped in phase 2 (its model kept and opened in Evaluate), evaluate, predict, export.

Screenshots of each step go to a temporary folder; ``TRANSFER_STUDIO_SCREENSHOTS=1 ./test.sh tests/e2e``
refreshes the README's pictures in docs/screenshots/ instead.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot

pytestmark = pytest.mark.e2e

TRAIN_TIMEOUT_MS = 600_000


def _go(page, url: str, path: str) -> None:
    page.goto(f"{url}/{path}")
    page.get_by_test_id("stSidebar").wait_for()


def test_walk_from_sample_data_to_exported_model(server, page, tmp_path):
    url, workspace = server
    _go(page, url, "")
    broken = tmp_path / "holiday photos.zip"
    broken.write_bytes(b"this is not a zip")
    page.locator("input[type=file]").first.set_input_files(str(broken))
    page.get_by_text("'holiday photos.zip' is not a readable zip file").wait_for()  # the user's name, not the server's
    page.get_by_role("button", name="Use the sample dataset").click()
    page.get_by_text("Current dataset").first.wait_for()
    page.locator(".stPlotlyChart").first.wait_for()
    page.get_by_text("Images 1-6 of 50 (page 1 of 9).").first.wait_for()  # each class's gallery pages
    pager = page.get_by_test_id("stNumberInput").filter(has_text="Page").first
    _click(pager.get_by_test_id("stNumberInputStepUp"))
    page.get_by_text("Images 7-12 of 50 (page 2 of 9).").first.wait_for()
    screenshot(page, "1-data")

    page.get_by_role("link", name=re.compile("Train")).click()
    page.get_by_role("button", name="Start training").wait_for()
    page.get_by_text("Quick", exact=True).click()
    page.wait_for_timeout(1000)
    screenshot(page, "2-train-settings")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile("Finished in .*: accuracy")).wait_for(timeout=TRAIN_TIMEOUT_MS)
    charts = page.locator(".stVegaLiteChart, [data-testid='stVegaLiteChart'], .stPlotlyChart")  # live curves
    charts.first.wait_for()
    assert charts.count() >= 2
    screenshot(page, "3-train-finished")

    stopped = _stop_a_fine_tune_run_in_phase_2(page, workspace)
    _click(page.get_by_role("button", name="Open in Evaluate"))
    page.get_by_text("Per class", exact=True).wait_for()
    run_picker = page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Run", exact=True))
    expect(run_picker.locator("input").first).to_have_value(stopped, timeout=60_000)  # the stopped run, kept
    page.get_by_text("Images behind a cell").wait_for()
    assert page.locator(".stPlotlyChart").count() >= 1
    page.wait_for_timeout(1500)
    screenshot(page, "4-evaluate")

    image = tmp_path / "circle.png"
    _draw_circle(image)
    page.get_by_role("link", name=re.compile("Predict")).click()
    page.get_by_text("Images, or zips of images").wait_for()
    page.locator("input[type=file]").first.set_input_files(str(image))
    page.get_by_text("circle.png").first.wait_for()
    page.get_by_test_id("stMetric").first.wait_for()
    page.wait_for_timeout(1500)
    screenshot(page, "5-predict")

    page.get_by_role("link", name=re.compile("Runs")).click()
    page.get_by_text("Export").first.wait_for()
    _click(page.get_by_role("button", name="Build", exact=True).first)
    download = page.get_by_role("button", name="Download", exact=True).first
    download.wait_for(timeout=300_000)
    with page.expect_download(timeout=120_000) as download_info:
        _click(download)
    bundle = tmp_path / "bundle.zip"
    download_info.value.save_as(bundle)
    import zipfile

    names = zipfile.ZipFile(bundle).namelist()
    assert any(name.endswith("model.keras") for name in names)
    assert any(name.endswith("predict.py") for name in names)
    screenshot(page, "6-runs-export")


def test_import_box_turns_a_teachable_machine_keras_export_into_a_run(server, page):
    """The real Keras download (keras_model.h5 and labels.txt, as a browser uploads them) on the Runs page."""
    from core import runs
    from core.workspace import Workspace
    from tests.teachable_runs import KERAS_CLASSES, KERAS_DIR, require_exports

    require_exports()
    url, workspace = server
    _go(page, url, "runs")
    box = page.get_by_test_id("stExpander").filter(has_text="Import a model (Teachable Machine)")
    box.get_by_text("Import a model (Teachable Machine)").wait_for()
    if box.locator("details[open]").count() == 0:  # open on an empty workspace, closed once there are runs
        _click(box.get_by_text("Import a model (Teachable Machine)"))
    uploader = box.get_by_test_id("stFileUploader")
    uploader.wait_for()
    uploader.locator("input[type=file]").set_input_files([str(KERAS_DIR / "keras_model.h5"),
                                                          str(KERAS_DIR / "labels.txt")])
    box.get_by_test_id("stFileChipName").filter(has_text="labels.txt").wait_for()
    box.get_by_label("Name (optional)").fill("waste sorter")
    _click(box.get_by_role("button", name="Import", exact=True))
    page.get_by_text(re.compile("Imported as run")).wait_for(timeout=300_000)
    imported = [r for r in runs.list_runs(Workspace.open(workspace)) if r.get("imported_from")]
    assert len(imported) == 1 and imported[0]["classes"] == KERAS_CLASSES and imported[0]["name"] == "waste sorter"
    run_id = imported[0]["run_id"]
    assert imported[0]["imported_from"]["format"] == "keras"
    page.get_by_role("heading", name=run_id).wait_for()  # opened as the current run, ready to export
    page.get_by_role("button", name="Open in Predict").wait_for()


def _stop_a_fine_tune_run_in_phase_2(page, workspace) -> str:
    """Start a *Best accuracy* run (fine-tuning), press Stop once phase 2 reports a batch; returns the run id.

    Every wait is keyed on what the page shows, with room for a loaded 2-core machine: the settings kept from the
    first run, the fine-tune strategy the preset picked, phase 2's first batch (its first step traces the network).
    """
    from core import runs
    from core.workspace import Workspace

    before = {record["run_id"] for record in runs.list_runs(Workspace.open(workspace))}
    _click(page.get_by_text("Best accuracy", exact=True))
    page.get_by_text("First train the classifier as in feature extraction").wait_for()  # strategy: fine-tune
    _click(page.get_by_role("button", name="Start training"))
    page.get_by_role("button", name="Stop training").wait_for(timeout=120_000)
    page.get_by_text(re.compile(r"phase 2: epoch \d+ of \d+: batch \d+ of \d+")).wait_for(timeout=TRAIN_TIMEOUT_MS)
    assert page.get_by_role("button", name=re.compile("Stop")).count() == 1  # ours; Streamlit's own is hidden
    assert not page.get_by_test_id("stStatusWidget").is_visible()
    _click(page.get_by_role("button", name="Stop training"))
    page.get_by_text(re.compile("^Stopping")).wait_for(timeout=60_000)  # at once, before the batch ends
    page.get_by_text(re.compile(r"^Stopped\.")).wait_for(timeout=300_000)
    (record,) = [r for r in runs.list_runs(Workspace.open(workspace)) if r["run_id"] not in before]
    assert record["status"] == "stopped" and record["config"]["strategy"] == "fine-tune"
    assert record["config"]["image_size"] in (None, 224)  # the settings of the first run, not a lost widget's
    assert any(epoch.get("phase") == 2 for epoch in runs.load_history(Workspace.open(workspace), record["run_id"]))
    assert runs.model_path(Workspace.open(workspace), record["run_id"]).exists()  # the best model so far, kept
    return record["run_id"]


def _click(locator) -> None:
    """Click after centring the element: Streamlit's sticky header covers elements scrolled to the top."""
    locator.evaluate("element => element.scrollIntoView({block: 'center'})")
    locator.click()


def _draw_circle(path) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (112, 112), "white")
    ImageDraw.Draw(image).ellipse((20, 20, 92, 92), fill=(200, 40, 40))
    image.save(path)
