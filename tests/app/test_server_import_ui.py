"""The Data page imports from the operator's server folder, and only from there."""

from __future__ import annotations

from tests.app.conftest import open_page
from tests.factories import make_class_folders


def test_a_folder_in_the_import_root_is_ingested(app_workspace, tmp_path, monkeypatch):
    root = tmp_path / "imports"
    make_class_folders(root / "colours", per_class=4)
    monkeypatch.setenv("TRANSFER_STUDIO_IMPORT_ROOT", str(root))
    at = open_page("data")
    at.text_input(key="data_server_path").set_value("colours").run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.exception
    assert at.session_state["dataset"].startswith("colours")


def test_a_path_outside_the_import_root_is_refused(app_workspace, tmp_path, monkeypatch):
    root = tmp_path / "imports"
    root.mkdir()
    make_class_folders(tmp_path / "private", per_class=4)
    monkeypatch.setenv("TRANSFER_STUDIO_IMPORT_ROOT", str(root))
    at = open_page("data")
    at.text_input(key="data_server_path").set_value("../private").run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert any("outside the import folder" in e.value for e in at.error)
    assert list(app_workspace.datasets_dir.iterdir()) == []


def test_no_import_box_without_an_import_root(app_workspace, monkeypatch):
    monkeypatch.delenv("TRANSFER_STUDIO_IMPORT_ROOT", raising=False)
    at = open_page("data")
    assert not [b for b in at.button if b.label == "Import"]
