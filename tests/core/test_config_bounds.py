"""Whole numbers and seeds are checked at the boundary, with the usual one-line message."""

from __future__ import annotations

import pytest

from core.cli import main
from core.config import TrainConfig
from core.data.datasets import list_datasets
from core.errors import ConfigError


@pytest.mark.parametrize(("field", "value"), [
    ("epochs", 2.5), ("fine_tune_epochs", 1.5), ("batch_size", 8.0), ("seed", -1), ("seed", 2**32), ("seed", 0.5),
    ("image_size", 96.0), ("hidden_units", True), ("early_stopping_patience", "3"),
])
def test_non_whole_numbers_and_bad_seeds_are_refused(field, value):
    with pytest.raises(ConfigError, match=field) as caught:
        TrainConfig(dataset_id="d", **{field: value})
    assert "\n" not in str(caught.value) and "whole number" in str(caught.value)


def test_ordinary_values_pass():
    config = TrainConfig(dataset_id="d", epochs=3, seed=2**32 - 1, image_size=96)
    assert config.seed == 2**32 - 1


def test_cli_ingest_with_a_negative_seed_is_one_error_line(workspace, tmp_path, capsys):
    from tests.factories import make_class_folders

    folder = make_class_folders(tmp_path / "src", per_class=3)
    code = main(["ingest", str(folder), "--seed", "-1", "--workspace", str(workspace.root)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1 and "seed=-1" in captured.err
    assert list_datasets(workspace) == []
