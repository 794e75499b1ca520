"""``evaluate RUN --dataset DATASET_ID``: any run scored on any dataset whose class names match."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.cli import main
from core.data.class_mapping import match_classes
from core.errors import ConfigError
from tests.factories import make_class_folders
from tests.teachable_runs import imported_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return imported_runs(tmp_path_factory)


def _dataset(workspace, root, names):
    """A generated dataset whose class folders are renamed to ``names``."""
    from core.data.datasets import ingest

    source = make_class_folders(root, per_class=6, size=48, classes=("red", "green", "blue")[:len(names)])
    for colour, name in zip(("red", "green", "blue"), names, strict=False):
        (source / colour).rename(source / name)
    return ingest(source, workspace, val_fraction=0.3, seed=0)


def test_an_imported_run_is_scored_on_a_dataset_whose_names_differ_in_case_and_spacing(runs, tmp_path, capsys):
    from core.models.prediction import Predictor

    dataset = _dataset(runs.workspace, tmp_path / "leaves", ["Diseased_Leaves", "healthy-LEAVES"])
    argv = ["evaluate", runs.tfjs_run, "--dataset", dataset.id, "--json", "--records",
            "--workspace", str(runs.workspace.root)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["class_mapping"] == {"Diseased_Leaves": "diseased leaves", "healthy-LEAVES": "healthy leaves"}
    assert result["dataset_id"] == dataset.id and result["split"] == "all"
    assert result["num_images"] == len(dataset.entries) == 12
    predictor = Predictor.from_run(runs.workspace, runs.tfjs_run)
    files = [record["file"] for record in result["records"]]
    predicted = predictor.predict_probabilities(files).argmax(1)
    truth = [predictor.classes.index(record["true"]) for record in result["records"]]
    assert {record["true"] for record in result["records"]} == set(predictor.classes)
    assert result["accuracy"] == pytest.approx(float(np.mean(predicted == np.array(truth))))


def test_a_dataset_with_other_classes_is_refused(runs, tmp_path, capsys):
    dataset = _dataset(runs.workspace, tmp_path / "colours", ["red", "green"])
    code = main(["evaluate", runs.tfjs_run, "--dataset", dataset.id, "--workspace", str(runs.workspace.root)])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and error[0].startswith("error: ")
    assert "(green, red)" in error[0] and "diseased leaves, healthy leaves" in error[0]


def test_an_imported_run_without_a_dataset_asks_for_one(runs, capsys):
    assert main(["evaluate", runs.keras_run, "--workspace", str(runs.workspace.root)]) == 2
    assert "--dataset" in capsys.readouterr().err


def test_exact_names_in_another_order_match_exactly():
    match = match_classes(["b", "a"], ["a", "b"])
    assert match.exact and match.mapping == {"a": "a", "b": "b"} and match.renamed() == {}


def test_names_that_collide_once_normalized_are_not_matched():
    with pytest.raises(ConfigError, match="do not match"):
        match_classes(["a b", "c"], ["a_b", "A B"])


def test_a_confirmed_mapping_must_pair_every_class_once():
    assert match_classes(["x", "y"], ["p", "q"], mapping={"p": "y", "q": "x"}).mapping == {"p": "y", "q": "x"}
    with pytest.raises(ConfigError, match="must pair"):
        match_classes(["x", "y"], ["p", "q"], mapping={"p": "x", "q": "x"})
