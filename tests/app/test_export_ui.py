"""The export section (shown on the Runs page) in AppTest: build a bundle, download it, see its parity row.

The Runs page opens a run through a dataframe row selection, which AppTest cannot make, so the
section is driven through a one-line script calling ``ui.export_views.render_export_section``.
"""

from __future__ import annotations

import zipfile

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.workspace import WORKSPACE_ENV
from tests.trained_run import make_tiny_run


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    run = make_tiny_run(tmp_path)
    monkeypatch.setenv(WORKSPACE_ENV, str(run.workspace.root))
    st.cache_resource.clear()
    yield run
    st.cache_resource.clear()


def _export_script(run_id: str) -> None:
    from core.workspace import Workspace
    from ui.export_views import render_export_section

    render_export_section(Workspace.open(), run_id)


def test_building_a_bundle_offers_the_zip_and_shows_a_passing_parity_row(tiny_run):
    at = AppTest.from_function(_export_script, args=(tiny_run.run_id,), default_timeout=300)
    at.run()
    assert not at.exception and not at.dataframe  # nothing built yet: no parity table
    at.button(key=f"export_build_bundle_{tiny_run.run_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    parity = at.dataframe[0].value
    assert parity.to_dict("records") == [{
        **parity.iloc[0].to_dict(), "format": "Bundle", "same class %": 100.0, "result": "pass",
    }]
    assert parity.iloc[0]["max prob diff"] <= 1e-4
    assert parity.iloc[0]["images"] == len(tiny_run.dataset.paths("val"))
    bundle = tiny_run.workspace.tmp_dir / "exports" / tiny_run.run_id / f"{tiny_run.run_id}-bundle.zip"
    with zipfile.ZipFile(bundle) as archive:
        assert {"model.keras", "labels.json", "MODEL_CARD.md", "predict.py"} <= set(archive.namelist())
    assert at.get("download_button")
    assert at.button(key=f"export_build_bundle_{tiny_run.run_id}").label == "Rebuild"


def test_a_run_without_a_model_has_nothing_to_export(tiny_run):
    from core import runs

    runs.model_path(tiny_run.workspace, tiny_run.run_id).unlink()
    at = AppTest.from_function(_export_script, args=(tiny_run.run_id,), default_timeout=60)
    at.run()
    assert not at.exception and not at.button
    assert "no saved model" in at.caption[0].value
