"""Continuing a finished or imported run from the Train page, and the accuracy before shown beside the curves."""

from __future__ import annotations

import shutil

import pytest

from tests.app.conftest import open_page, rerun_until
from tests.factories import make_class_folders
from tests.teachable_runs import TFJS_CLASSES, imported_runs

BEFORE = {"dataset_id": "d1", "split": "val", "accuracy": 0.5, "macro_f1": 0.33, "num_images": 10,
          "mean_confidence": 0.9}


@pytest.fixture
def imported_run(app_workspace, tmp_path_factory):
    """The app's workspace holding a copy of the imported TF.js run (two leaf classes)."""
    source = imported_runs(tmp_path_factory)
    shutil.copytree(source.workspace.runs_dir / source.tfjs_run, app_workspace.runs_dir / source.tfjs_run)
    return source.tfjs_run


def _leaves_dataset(workspace, root, names=("Diseased_Leaves", "Healthy Leaves"), per_class=8):
    from core.data.datasets import ingest

    source = make_class_folders(root, per_class=per_class, size=48, classes=("red", "green"))
    for colour, name in zip(("red", "green"), names, strict=True):
        (source / colour).rename(source / name)
    return ingest(source, workspace, val_fraction=0.4, seed=0)


def _pick(at, run_id):
    at.radio(key="train_base_source").set_value("Continue one of my runs").run()
    at.selectbox(key="train_start_from").set_value(run_id).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_train_page_continues_an_imported_run_and_shows_its_accuracy_before(app_workspace, imported_run,
                                                                             tmp_path):
    from core import runs

    dataset = _leaves_dataset(app_workspace, tmp_path / "leaves")
    at = _pick(open_page("train", dataset=dataset.id), imported_run)
    assert not at.error, [e.value for e in at.error]
    assert at.button(key="continue_start").disabled, "the renamed class pairs must be confirmed first"
    assert at.table[0].value["run class"].tolist() == TFJS_CLASSES
    at.checkbox(key=f"continue_pairs_ok_{imported_run}_{dataset.id}").check().run()
    at.button(key="continue_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    new_run = at.session_state["run"]
    record = runs.load_run(app_workspace, new_run)
    assert record["continued_from"]["run_id"] == imported_run and record["config"]["backbone"] == "teachable_machine"
    assert record["continued_from"]["class_mapping"] == {"Diseased_Leaves": "diseased leaves",
                                                         "Healthy Leaves": "healthy leaves"}
    rerun_until(at, lambda a: any("Finished in" in s.value for s in a.success), timeout=600)
    before = runs.load_run(app_workspace, new_run)["continued_from"]["before"]
    assert before["num_images"] == len(dataset.split_entries("val"))
    shown = [c.value for c in at.caption if "Continues run" in c.value]
    assert shown and f"before: {before['accuracy']:.2f} on val" in shown[0].replace("\\", "")


def test_train_page_refuses_a_run_whose_classes_differ_and_queues_nothing(app_workspace, imported_run, tmp_path):
    from core import runs

    dataset = _leaves_dataset(app_workspace, tmp_path / "fruit", names=("apples", "pears"), per_class=4)
    at = _pick(open_page("train", dataset=dataset.id), imported_run)
    assert "do not match" in at.error[0].value and "apples" in at.error[0].value
    assert at.button(key="continue_start").disabled
    assert [r["run_id"] for r in runs.list_runs(app_workspace)] == [imported_run]


def test_train_page_refuses_continuing_from_scratch(app_workspace, imported_run, tmp_path):
    dataset = _leaves_dataset(app_workspace, tmp_path / "leaves", per_class=4)
    at = _pick(open_page("train", dataset=dataset.id), imported_run)
    at.radio(key="train_strategy").set_value("from-scratch").run()
    assert "cannot continue a run" in at.error[0].value and at.button(key="continue_start").disabled


def test_start_from_offers_only_finished_runs_with_a_model(app_workspace, imported_run, sample_dataset):
    from core import runs
    from core.config import TrainConfig

    config = TrainConfig(dataset_id=sample_dataset.id)
    runs.create_run(app_workspace, config, classes=sample_dataset.classes, status="queued")
    runs.create_run(app_workspace, config, classes=sample_dataset.classes, status="failed")
    at = open_page("train", dataset=sample_dataset.id)
    assert any(s.value == "1. Backbone" for s in at.subheader)  # a fresh network: the usual settings
    at.radio(key="train_base_source").set_value("Continue one of my runs").run()
    picker = at.selectbox(key="train_start_from")
    assert picker.value == "" and picker.options[0] == "pick the run to continue"
    assert len(picker.options) == 2 and picker.options[1].startswith(f"run {imported_run}: imported from")
    assert not any(s.value == "1. Backbone" for s in at.subheader)


def _continued_run(workspace, source_run):
    """A run record that continues ``source_run``, with one epoch of history (no training needed to show it)."""
    from core import runs
    from core.workspace import atomic_write_json

    record = runs.load_run(workspace, source_run)
    run_id = f"{source_run}-continued"
    shutil.copytree(runs.run_dir(workspace, source_run), runs.run_dir(workspace, run_id))
    atomic_write_json(runs.run_dir(workspace, run_id) / "run.json", {
        **record, "run_id": run_id, "imported_from": None, "status": "done", "created_at": record["created_at"] + 1,
        "continued_from": {"run_id": source_run, "class_mapping": {}, "before": BEFORE},
        "headline": {"split": "val", "accuracy": 0.9, "n": 10, "ci95": [0.6, 0.98]}})
    atomic_write_json(runs.run_dir(workspace, run_id) / "history.json",
                      [{"epoch": 1, "phase": 1, "accuracy": 0.95, "val_accuracy": 0.9, "loss": 0.2,
                        "val_loss": 0.3}])
    return run_id


def test_runs_page_marks_the_accuracy_before_in_the_table_and_the_curves(app_workspace, imported_run):
    run_id = _continued_run(app_workspace, imported_run)
    at = open_page("runs", run=run_id)
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    started = table.set_index("run").loc[run_id, "started from"]
    assert started == f"run {imported_run}, before: 0.50 on val (10 images)"
    assert table.set_index("run").loc[imported_run, "started from"] == ""
    import json

    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    accuracy = next(f for f in figures if f["layout"]["title"]["text"] == "Accuracy")
    star = next(trace for trace in accuracy["data"] if trace.get("marker", {}).get("symbol") == "star")
    assert star["x"] == [0] and star["y"] == [0.5] and star["text"] == ["before: 0.50 on val (10 images)"]


def test_live_curves_mark_the_accuracy_before_at_epoch_zero():
    from ui.charts import live_curves_spec

    history = [{"epoch": 1, "phase": 1, "accuracy": 0.95, "val_accuracy": 0.9}]
    spec = live_curves_spec(history, "accuracy", before=BEFORE)
    marker = spec["layer"][-1]
    assert marker["data"]["values"] == [{"epoch": 0, "value": 0.5, "label": "before: 0.50 on val (10 images)"}]
    assert [layer["mark"]["type"] for layer in marker["layer"]] == ["point", "text"]
    assert len(live_curves_spec(history, "loss", before=BEFORE)["layer"]) == 1  # no loss was measured before


def test_runs_cli_prints_the_accuracy_before(app_workspace, imported_run, capsys):
    import json

    from core.cli import main

    run_id = _continued_run(app_workspace, imported_run)
    assert main(["runs", "--workspace", str(app_workspace.root)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(run_id))
    assert line.endswith("(before: 0.50 on val (10 images))")
    assert main(["runs", "--json", "--workspace", str(app_workspace.root)]) == 0
    rows = {row["run_id"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[run_id]["accuracy_before"]["accuracy"] == 0.5 and rows[imported_run]["accuracy_before"] is None
