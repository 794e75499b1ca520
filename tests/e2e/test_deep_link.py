"""A fresh server's very first request is a deep link: it still goes through app.py (navigation, sidebar)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.e2e


def test_first_request_to_a_deep_link_shows_the_app_shell(server, page):
    from core.data.sample import create_sample_dataset
    from core.workspace import Workspace

    url, workspace = server
    dataset = create_sample_dataset(Workspace.open(workspace))
    page.goto(f"{url}/train?dataset={dataset.id}")
    page.get_by_role("heading", name="Train").wait_for()
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("link", name=re.compile("1. Data")).wait_for()
    sidebar.get_by_text("200 images, 4 classes").wait_for()
    assert sidebar.get_by_role("link", name=re.compile("^train$")).count() == 0
