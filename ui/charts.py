"""Figures shared by the Train and Runs pages: learning curves whose axes fit the data.

A run that moves between 0.90 and 0.95 is a flat line on a 0-to-1 axis, so by default the value axis spans
the data (with a little room); ``full_range=True`` gives the whole 0-to-1 range of accuracy (and a loss axis
from 0). The start of fine-tuning is a dashed vertical line named in the legend (or the subtitle), never a
label drawn over the curves.
"""

from __future__ import annotations

import plotly.graph_objects as go

from core.training.continuation import format_before

METRIC_TITLES = {"loss": "Loss", "accuracy": "Accuracy"}
BOUNDARY_NAME = "fine-tuning starts"
MIN_SPAN = {"accuracy": 0.02, "loss": 0.02}


def _values(history: list[dict], metric: str) -> list[float]:
    return [record[key] for record in history for key in (metric, f"val_{metric}") if record.get(key) is not None]


def value_range(histories: list[list[dict]], metric: str, *, full_range: bool = False) -> list[float] | None:
    """``[low, high]`` of the value axis: the data with 8% room each side (accuracy kept within 0-1), or the full
    range; None when there is nothing to draw."""
    values = [value for history in histories for value in _values(history, metric)]
    if not values:
        return None
    low, high = min(values), max(values)
    if full_range:
        return [0.0, 1.02] if metric == "accuracy" else [0.0, high * 1.05 or 1.0]
    center, half = (low + high) / 2, max(high - low, MIN_SPAN.get(metric, 0.02)) / 2 * 1.16
    low, high = max(0.0, center - half), center + half
    return [low, min(1.02, high) if metric == "accuracy" else high]


def phase_boundary(history: list[dict]) -> float | None:
    """Where fine-tuning starts on the epoch axis (between the last epoch of phase 1 and the first of phase 2)."""
    boundary = next((record["epoch"] for record in history if record.get("phase") == 2), None)
    return None if boundary is None else boundary - 0.5


def curves_figure(histories: dict[str, list[dict]], metric: str, height: int = 320,
                  starts: dict[str, dict] | None = None, *, full_range: bool = False) -> go.Figure:
    """Train and validation ``metric`` per epoch for one or more runs, with the fine-tuning start marked.

    Args:
        histories: ``{label: epoch records}``; one run gives "train" and "validation" lines, several give two
            lines per run.
        metric: ``loss`` or ``accuracy``.
        full_range: The whole 0-1 accuracy range (loss from 0) instead of the data's own range.
        starts: ``{label: accuracy before}`` of runs that continue an earlier model
            (``core.training.continuation.accuracy_before``): the accuracy chart marks it at epoch 0.
    """
    figure = go.Figure()
    single = len(histories) == 1
    for label, before in (starts or {}).items() if metric == "accuracy" else ():
        text = format_before(before)
        figure.add_scatter(x=[0], y=[before["accuracy"]], mode="markers+text", text=[text],
                           textposition="top right", marker={"symbol": "star", "size": 12},
                           name=text if single else f"{label} ({text})")
    for label, history in histories.items():
        epochs = [record["epoch"] for record in history]
        for key, name, dash in ((metric, "train", "dot"), (f"val_{metric}", "validation", "solid")):
            values = [record.get(key) for record in history]
            if any(value is not None for value in values):
                figure.add_scatter(x=epochs, y=values, mode="lines+markers", line={"dash": dash},
                                   name=name if single else f"{label} ({name})")
        boundary = phase_boundary(history)
        if boundary is not None:
            figure.add_vline(x=boundary, line_dash="dash", line_color="gray")
            figure.add_scatter(x=[None], y=[None], mode="lines", line={"dash": "dash", "color": "gray"},
                               name=BOUNDARY_NAME if single else f"{label}: {BOUNDARY_NAME}")
    figure.update_layout(title=METRIC_TITLES.get(metric, metric), height=height, xaxis_title="epoch",
                         margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25})
    marks = [[{"accuracy": before["accuracy"]}] for before in (starts or {}).values()] if metric == "accuracy" else []
    span = value_range(list(histories.values()) + marks, metric, full_range=full_range)
    if span is not None:
        figure.update_yaxes(range=span)
    return figure


def live_curves_spec(history: list[dict], metric: str, height: int = 320, before: dict | None = None, *,
                     full_range: bool = False) -> dict:
    """A Vega-Lite spec (data inline) of one run's train and validation ``metric`` per epoch.

    The live view of a training run redraws every second in every tab watching it; a plain spec
    costs a JSON dump to send, where a plotly figure is rebuilt and validated on every redraw.
    ``before`` (the accuracy of a continued run's starting model) is marked at epoch 0 of the accuracy chart.
    """
    values = [{"epoch": record["epoch"], "series": name, "value": record[key]}
              for record in history
              for key, name in ((metric, "train"), (f"val_{metric}", "validation")) if record.get(key) is not None]
    y = {"field": "value", "type": "quantitative", "title": metric}
    marks = [[{"accuracy": before["accuracy"]}]] if before is not None and metric == "accuracy" else []
    span = value_range([history] + marks, metric, full_range=full_range)
    if span is not None:
        y["scale"] = {"domain": span, "zero": False, "nice": False}
    layers = [{"mark": {"type": "line", "point": True, "clip": True},
               "encoding": {"x": {"field": "epoch", "type": "quantitative"}, "y": y,
                            "color": {"field": "series", "type": "nominal", "title": None,
                                      "legend": {"orient": "bottom"}},
                            "strokeDash": {"field": "series", "type": "nominal", "legend": None,
                                           "scale": {"domain": ["validation", "train"], "range": [[1, 0], [2, 2]]}}}}]
    title: dict = {"text": METRIC_TITLES.get(metric, metric)}
    boundary = phase_boundary(history)
    if boundary is not None:
        layers.append({"data": {"values": [{"epoch": boundary}]}, "mark": {"type": "rule", "strokeDash": [4, 4],
                       "color": "gray"}, "encoding": {"x": {"field": "epoch", "type": "quantitative"}}})
        title["subtitle"] = f"dashed line: {BOUNDARY_NAME}"
    if before is not None and metric == "accuracy":
        layers.append(_before_layer(before))
    return {"title": title, "height": height, "data": {"values": values}, "layer": layers}


def _before_layer(before: dict) -> dict:
    """A starred point at epoch 0 labelled "before: 0.50 on val (10 images)"."""
    point = {"epoch": 0, "value": before["accuracy"], "label": format_before(before)}
    encoding = {"x": {"field": "epoch", "type": "quantitative"}, "y": {"field": "value", "type": "quantitative"}}
    return {"data": {"values": [point]}, "layer": [
        {"mark": {"type": "point", "shape": "diamond", "size": 120, "filled": True, "color": "gray"},
         "encoding": {**encoding, "tooltip": {"field": "label"}}},
        {"mark": {"type": "text", "align": "left", "dx": 8, "dy": -8, "color": "gray"},
         "encoding": {**encoding, "text": {"field": "label"}}}]}
