"""Server-folder imports stay inside the operator's import root."""

from __future__ import annotations

import os

import pytest

from core.delivery.server_import import list_importable, resolve_import_path
from core.errors import DatasetError


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "imports"
    (folder / "leaves").mkdir(parents=True)
    (folder / "scans.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (tmp_path / "secret").mkdir()
    return folder


def test_paths_inside_the_root_resolve(root):
    assert resolve_import_path("leaves", root) == root / "leaves"
    assert resolve_import_path("scans.zip", root) == root / "scans.zip"
    assert list_importable(root) == ["leaves", "scans.zip"]


@pytest.mark.parametrize("text", ["../secret", "/etc", "leaves/../../secret"])
def test_paths_outside_the_root_are_refused(root, text):
    with pytest.raises(DatasetError, match="outside the import folder"):
        resolve_import_path(text, root)


def test_a_symlink_leading_out_of_the_root_is_refused(root):
    os.symlink(root.parent / "secret", root / "link")
    with pytest.raises(DatasetError, match="outside the import folder"):
        resolve_import_path("link", root)


def test_imports_are_off_without_a_configured_root(monkeypatch):
    monkeypatch.delenv("TRANSFER_STUDIO_IMPORT_ROOT", raising=False)
    with pytest.raises(DatasetError, match="TRANSFER_STUDIO_IMPORT_ROOT"):
        resolve_import_path("anything")
