"""``train DATASET --continue RUN_ID``: an imported Teachable Machine run made better on a labelled dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.cli import main
from tests.factories import make_class_folders
from tests.teachable_runs import imported_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return imported_runs(tmp_path_factory)


def _dataset(workspace, root, names, per_class=10):
    from core.data.datasets import ingest

    source = make_class_folders(root, per_class=per_class, size=48, classes=("red", "green", "blue")[:len(names)])
    for colour, name in zip(("red", "green", "blue"), names, strict=False):
        (source / colour).rename(source / name)
    return ingest(source, workspace, val_fraction=0.3, seed=0)


def test_the_starting_model_keeps_its_answers_with_outputs_in_the_dataset_order(runs):
    from core.models.prediction import Predictor
    from core.runs import load_run, model_path
    from core.training.continuation import StartingPoint

    source = Predictor.from_run(runs.workspace, runs.keras_run)
    classes = tuple(load_run(runs.workspace, runs.keras_run)["classes"])
    dataset_classes = sorted(classes)  # datasets sort their class folders; Teachable Machine keeps its order
    start = StartingPoint(spec=None, image_size=224, weights=None, source_run=runs.keras_run,
                          model_file=str(model_path(runs.workspace, runs.keras_run)), source_classes=classes,
                          mapping={name: name for name in classes})
    model = start.load_model(dataset_classes)
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 224, 224, 3)).astype("float32")
    before = source.predict_arrays(pixels)
    after = np.asarray(model(pixels, training=False))
    order = [classes.index(name) for name in dataset_classes]
    assert np.abs(after - before[:, order]).max() < 1e-6


def test_continuing_an_imported_run_records_accuracy_before_and_trains_its_head(runs, tmp_path, capsys):
    from core.runs import load_history, load_run

    dataset = _dataset(runs.workspace, tmp_path / "leaves", ["Healthy Leaves", "diseased_leaves"], per_class=16)
    # The head is chosen and refit on cached features of the imported model's own base.
    argv = ["train", dataset.id, "--continue", runs.tfjs_run, "--epochs", "40", "--early-stopping-patience", "0",
            "--json", "--workspace", str(runs.workspace.root)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = load_run(runs.workspace, printed["run_id"])
    assert record["status"] == "done" and record["classes"] == list(dataset.classes)
    assert record["config"]["backbone"] == "teachable_machine" and record["config"]["resize"] == "crop-lanczos"
    before = record["continued_from"]["before"]
    assert record["continued_from"]["class_mapping"] == {"Healthy Leaves": "healthy leaves",
                                                         "diseased_leaves": "diseased leaves"}
    assert before["num_images"] == len(dataset.split_entries("val")) and printed["val_accuracy_before"] == \
        before["accuracy"]
    history = load_history(runs.workspace, printed["run_id"])
    assert len(history) == 1 and record["head_selection"]["chosen"]  # the head is chosen by cross-validation
    assert record["headline"]["split"] == "val" and record["headline"]["accuracy"] == record["best_val_accuracy"]
    # The leaves model calls every one of these generated pictures "diseased"; refitted, it tells them apart.
    assert before["accuracy"] == 0.5 and record["best_val_accuracy"] > 0.9
    assert record["feature_key"] and record["weights"].startswith(f"continued from run {runs.tfjs_run}")
