"""Small promises: the README names every setting the code reads, messages read right, file formats are named
for what they write, and the tests say where their shared material is."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from core.cli import build_parser
from core.data.ingest_limits import IngestLimits
from core.errors import DatasetError

ROOT = Path(__file__).resolve().parents[2]


def _variables_read_by_the_code() -> set[str]:
    names = set()
    for path in [*ROOT.glob("core/**/*.py"), *ROOT.glob("ui/**/*.py"), ROOT / "app.py"]:
        names |= set(re.findall(r"TRANSFER_STUDIO_[A-Z_]+[A-Z]", path.read_text(encoding="utf-8")))
    names |= {"TRANSFER_STUDIO_" + field.name.upper() for field in dataclasses.fields(IngestLimits)}
    return names - {"TRANSFER_STUDIO_"}


def test_the_readme_documents_every_environment_variable_the_code_reads():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = sorted(name for name in _variables_read_by_the_code() if f"`{name}`" not in readme)
    assert missing == []
    assert "`PYTHON`" in readme and "PYTHON" in (ROOT / "scripts" / "ensure_venv.sh").read_text()


def test_a_bad_limit_value_asks_for_an_integer_in_plain_words():
    with pytest.raises(DatasetError) as caught:
        IngestLimits.from_env({"TRANSFER_STUDIO_MAX_ENTRIES": "lots"})
    assert "Set it to an integer such as 100000" in str(caught.value)
    assert "a int" not in str(caught.value)


def test_the_numpy_embeddings_format_is_named_npz():
    parser = build_parser()
    assert parser.parse_args(["embeddings", "d", "--format", "npz"]).format == "npz"
    with pytest.raises(SystemExit):
        parser.parse_args(["embeddings", "d", "--format", "npy"])


def test_a_missing_shared_folder_is_named_with_the_variable_that_moves_it(tmp_path):
    from tests.conftest import SHARED_ENV, _require_shared

    with pytest.raises(pytest.fail.Exception) as caught:
        _require_shared("data/x.zip", tmp_path / "nowhere")
    message = str(caught.value)
    assert str(tmp_path / "nowhere") in message and SHARED_ENV in message and "DEVELOPERS.md" not in message


def test_screenshots_go_to_a_temporary_folder_unless_asked(tmp_path):
    from tests.e2e.conftest import README_SCREENSHOTS, screenshots_dir

    assert not screenshots_dir({}).is_relative_to(ROOT)
    assert screenshots_dir({"TRANSFER_STUDIO_SCREENSHOTS": "1"}) == README_SCREENSHOTS
    assert screenshots_dir({"TRANSFER_STUDIO_SCREENSHOTS": str(tmp_path)}) == tmp_path


def test_the_readme_shows_exactly_the_screenshots_the_walk_takes():
    walk = (ROOT / "tests" / "e2e" / "test_walkthrough.py").read_text(encoding="utf-8")
    taken = set(re.findall(r"screenshot\(page, \"([^\"]+)\"\)", walk))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"\]\(docs/screenshots/([^)\s]+)\.png\)", readme))
    stored = {path.stem for path in (ROOT / "docs" / "screenshots").glob("*.png")}
    assert taken and shown == taken == stored
