"""Dataset versions: relabel / exclude make a new dataset, the original stays byte-identical."""

from __future__ import annotations

import csv
import hashlib

import pytest

from core.data.datasets import load_dataset
from core.data.versions import create_version, list_versions, repeat_run_config
from core.errors import DatasetError
from tests.factories import make_tiny_dataset


@pytest.fixture
def tiny(workspace, tmp_path):
    return make_tiny_dataset(workspace, tmp_path, per_class=4, size=32)


def _tree_digest(folder) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(dataset) -> list[dict]:
    with open(dataset.root / "manifest.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_relabel_and_exclude_change_exactly_the_asked_rows_and_leave_the_original_intact(workspace, tiny):
    before = _tree_digest(tiny.root)
    red = [e for e in tiny.entries if e.label == "red"]
    green = [e for e in tiny.entries if e.label == "green"]
    moved, dropped = red[0].file, green[0].file
    version = create_version(workspace, tiny.id, relabel={moved: "blue"}, exclude={dropped}, note="fix")
    assert version.id != tiny.id and version.parent_id == tiny.id
    expected = [{**row, "label": "blue"} if row["file"] == moved else row
                for row in _rows(tiny) if row["file"] != dropped]
    assert _rows(version) == expected
    assert _tree_digest(tiny.root) == before
    old = tiny.summary["class_totals"]
    assert version.summary["class_totals"] == {"blue": old["blue"] + 1, "green": old["green"] - 1,
                                               "red": old["red"] - 1}
    assert version.summary["total_images"] == len(tiny.entries) - 1
    assert (version.root / moved).read_bytes() == (tiny.root / moved).read_bytes()
    assert not (version.root / dropped).exists()


def test_versions_are_listed_with_what_changed_and_the_same_changes_reuse_the_version(workspace, tiny):
    file = tiny.entries[0].file
    first = create_version(workspace, tiny.id, exclude={file})
    assert create_version(workspace, tiny.id, exclude={file}).id == first.id
    family = list_versions(workspace, first.id)
    assert [item["id"] for item in family] == [tiny.id, first.id]
    assert family[0]["description"] == "original upload"
    assert family[1]["description"] == "excluded 1"
    assert family[1]["changes"]["excluded"][0]["file"] == file
    assert load_dataset(workspace, first.id).parent_id == tiny.id


def test_a_version_breaking_the_dataset_rules_is_refused_with_a_reason(workspace, tiny):
    green = {e.file for e in tiny.entries if e.label == "green"}
    with pytest.raises(DatasetError, match="'green' would have 1 image"):
        create_version(workspace, tiny.id, exclude=set(list(green)[:-1]))
    with pytest.raises(DatasetError, match="not in dataset"):
        create_version(workspace, tiny.id, exclude={"images/nope.jpg"})
    with pytest.raises(DatasetError, match="Nothing to change"):
        create_version(workspace, tiny.id, relabel={tiny.entries[0].file: tiny.entries[0].label})
    assert [item["id"] for item in list_versions(workspace, tiny.id)] == [tiny.id]


def test_repeat_run_config_keeps_the_settings_and_points_at_the_version():
    record = {"config": {"dataset_id": "a", "backbone": "resnet50", "epochs": 3, "unknown_key": 1}}
    config = repeat_run_config(record, "a-v-123")
    assert (config.dataset_id, config.backbone, config.epochs) == ("a-v-123", "resnet50", 3)
