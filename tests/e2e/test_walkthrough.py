"""The whole walk in a real browser: sample data, quick training, evaluate, predict, export.

Screenshots of each step go to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import screenshot

pytestmark = pytest.mark.e2e

TRAIN_TIMEOUT_MS = 600_000


def _go(page, url: str, path: str) -> None:
    page.goto(f"{url}/{path}")
    page.get_by_test_id("stSidebar").wait_for()


def test_walk_from_sample_data_to_exported_model(server, page, tmp_path):
    url, _ = server
    _go(page, url, "")
    page.get_by_role("button", name="Use the sample dataset").click()
    page.get_by_text("Current dataset").first.wait_for()
    page.locator(".stPlotlyChart").first.wait_for()
    screenshot(page, "1-data")

    page.get_by_role("link", name=re.compile("Train")).click()
    page.get_by_role("button", name="Start training").wait_for()
    page.get_by_text("Quick", exact=True).click()
    page.wait_for_timeout(1000)
    screenshot(page, "2-train-settings")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile("Finished: best validation accuracy")).wait_for(timeout=TRAIN_TIMEOUT_MS)
    page.locator(".stPlotlyChart").first.wait_for()
    assert page.locator(".stPlotlyChart").count() >= 2
    screenshot(page, "3-train-finished")
