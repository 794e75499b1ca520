"""Learning curves whose axes fit the data, phase markers that stay off the curves, the Evaluate figures."""

from __future__ import annotations

import numpy as np

from core.insight.evaluation import evaluate_predictions
from ui.charts import BOUNDARY_NAME, curves_figure, live_curves_spec
from ui.evaluate_views import confusion_figure, per_class_figure

HISTORY = [{"epoch": e, "phase": 1 if e <= 3 else 2, "accuracy": 0.90 + 0.01 * e, "val_accuracy": 0.91 + 0.005 * e,
            "loss": 0.4 - 0.02 * e, "val_loss": 0.38 - 0.01 * e} for e in range(1, 6)]


def test_the_accuracy_axis_fits_a_run_moving_between_0_90_and_0_95():
    low, high = curves_figure({"run": HISTORY}, "accuracy").layout.yaxis.range
    values = [r[k] for r in HISTORY for k in ("accuracy", "val_accuracy")]
    assert low <= min(values) and high >= max(values)
    assert high - low < 0.1  # not a flat line at the top of a 0-1 axis
    assert list(curves_figure({"run": HISTORY}, "accuracy", full_range=True).layout.yaxis.range) == [0.0, 1.02]
    domain = live_curves_spec(HISTORY, "accuracy")["layer"][0]["encoding"]["y"]["scale"]["domain"]
    assert domain[0] > 0.8 and domain[1] - domain[0] < 0.1
    full = live_curves_spec(HISTORY, "accuracy", full_range=True)["layer"][0]["encoding"]["y"]["scale"]["domain"]
    assert full == [0.0, 1.02]


def test_fine_tuning_starts_are_named_in_the_legend_not_drawn_over_the_curves():
    other = [dict(r, epoch=r["epoch"], phase=1 if r["epoch"] <= 2 else 2) for r in HISTORY]
    figure = curves_figure({"a": HISTORY, "b": other}, "loss")
    assert not figure.layout.annotations  # no text laid over the plot area
    assert [shape.x0 for shape in figure.layout.shapes] == [3.5, 2.5]
    assert {t.name for t in figure.data if t.name and BOUNDARY_NAME in t.name} == \
        {f"a: {BOUNDARY_NAME}", f"b: {BOUNDARY_NAME}"}
    spec = live_curves_spec(HISTORY, "loss")
    assert BOUNDARY_NAME in spec["title"]["subtitle"]
    assert not any(layer["mark"].get("type") == "text" for layer in spec["layer"])


def _result():
    y_true = [0] * 8 + [1] * 2
    probabilities = np.eye(2)[[0] * 6 + [1] * 2 + [1, 0]]
    return evaluate_predictions(y_true, probabilities, ["big", "small"])


def test_the_normalized_confusion_matrix_shows_shares_of_each_true_class():
    counts = confusion_figure(_result())
    shares = confusion_figure(_result(), normalized=True)
    assert list(counts.data[1].text) == ["6", "2", "1", "1"]
    assert list(shares.data[1].text) == ["75%", "25%", "50%", "50%"]
    np.testing.assert_allclose(np.asarray(shares.data[0].z), [[0.75, 0.25], [0.5, 0.5]])


def test_per_class_bars_show_precision_and_recall_of_every_class():
    figure = per_class_figure(_result())
    bars = {trace.name: dict(zip(trace.y, trace.x, strict=True)) for trace in figure.data}
    assert bars["recall"] == {"big": 0.75, "small": 0.5}
    assert bars["precision"] == {"big": 6 / 7, "small": 1 / 3}
