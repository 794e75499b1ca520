"""The Runs page: list runs, overlay their curves, delete one after a confirmation."""

from __future__ import annotations

import pytest

from core import runs
from core.config import TrainConfig
from tests.app.conftest import open_page


def _fake_run(workspace, dataset, seed: int, accuracies) -> str:
    """A finished run record with a history (the page only reads the run store)."""
    config = TrainConfig(dataset_id=dataset.id, weights="none", seed=seed)
    run_id = runs.create_run(workspace, config, classes=dataset.classes, status="done")
    history = [{"epoch": i + 1, "phase": 1, "loss": 1.0 - a / 2, "accuracy": a, "val_loss": 1.0 - a / 3,
                "val_accuracy": a} for i, a in enumerate(accuracies)]
    from core.workspace import atomic_write_json

    atomic_write_json(runs.run_dir(workspace, run_id) / "history.json", history)
    runs.update_run(workspace, run_id, best_val_accuracy=max(accuracies), epochs_run=len(accuracies),
                    timings={"total_s": 3.0}, headline={"split": "val", "accuracy": max(accuracies), "n": 40,
                                                         "correct": round(40 * max(accuracies)),
                                                         "ci95": [0.5, 0.99]})
    return run_id


@pytest.fixture
def two_runs(app_workspace, sample_dataset):
    return [_fake_run(app_workspace, sample_dataset, seed, acc)
            for seed, acc in ((0, [0.5, 0.7]), (1, [0.6, 0.9, 0.95]))]


def test_runs_are_listed_with_their_best_accuracy(two_runs):
    at = open_page("runs")
    table = at.dataframe[0].value
    assert set(table["run"]) == set(two_runs)
    assert sorted(table["accuracy"]) == [0.7, 0.95]
    assert set(table["on"]) == {"val (40 images)"}


def test_selecting_two_runs_overlays_their_curves(two_runs):
    at = open_page("runs")
    at.multiselect(key="runs_compare").set_value(two_runs).run()
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    import json

    figure = json.loads(charts[1].proto.spec)
    names = {trace["name"] for trace in figure["data"]}
    assert any(two_runs[0] in name for name in names) and any(two_runs[1] in name for name in names)


def test_delete_asks_for_confirmation_then_removes_the_run(app_workspace, two_runs):
    at = open_page("runs")
    at.selectbox(key="runs_single").set_value(two_runs[0]).run()
    next(b for b in at.button if b.label == "Delete").click().run()
    assert runs.load_run(app_workspace, two_runs[0])  # not yet
    assert any("for good" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Yes, delete").click().run()
    assert not at.exception
    assert [r["run_id"] for r in runs.list_runs(app_workspace)] == [two_runs[1]]


def test_the_accuracy_axis_fits_the_compared_runs_with_the_full_range_one_click_away(two_runs):
    import json

    at = open_page("runs")
    at.multiselect(key="runs_compare").set_value(two_runs).run()

    def accuracy_range(at):
        figure = json.loads(at.get("plotly_chart")[1].proto.spec)
        return figure["layout"]["yaxis"]["range"]

    low, high = accuracy_range(at)
    assert 0.4 < low < 0.5 and 0.95 < high < 1.02  # the data (0.5 to 0.95) with a little room
    at.toggle(key="runs_full_range").set_value(True).run()
    assert accuracy_range(at) == [0.0, 1.02]
