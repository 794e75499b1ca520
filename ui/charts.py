"""Plotly figures shared by the Train and Runs pages."""

from __future__ import annotations

import plotly.graph_objects as go

from core.continuation import format_before

METRIC_TITLES = {"loss": "Loss", "accuracy": "Accuracy"}


def curves_figure(histories: dict[str, list[dict]], metric: str, height: int = 320,
                  starts: dict[str, dict] | None = None) -> go.Figure:
    """Train and validation ``metric`` per epoch for one or more runs, with the fine-tuning start marked.

    Args:
        histories: ``{label: epoch records}``; one run gives "train" and "validation" lines, several give two
            lines per run.
        metric: ``loss`` or ``accuracy``.
        starts: ``{label: accuracy before}`` of runs that continue an earlier model
            (``core.continuation.accuracy_before``): the accuracy chart marks it at epoch 0.
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
        boundary = next((record["epoch"] for record in history if record.get("phase") == 2), None)
        if boundary is not None:
            figure.add_vline(x=boundary - 0.5, line_dash="dash", line_color="gray",
                             annotation_text="fine-tuning starts" if single else f"{label}: fine-tuning",
                             annotation_position="top left")
    figure.update_layout(title=METRIC_TITLES.get(metric, metric), height=height, xaxis_title="epoch",
                         margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25})
    if metric == "accuracy":
        figure.update_yaxes(range=[0, 1.02])
    return figure


def live_curves_spec(history: list[dict], metric: str, height: int = 320, before: dict | None = None) -> dict:
    """A Vega-Lite spec (data inline) of one run's train and validation ``metric`` per epoch.

    The live view of a training run redraws every second in every tab watching it; a plain spec
    costs a JSON dump to send, where a plotly figure is rebuilt and validated on every redraw.
    ``before`` (the accuracy of a continued run's starting model) is marked at epoch 0 of the accuracy chart.
    """
    values = [{"epoch": record["epoch"], "series": name, "value": record[key]}
              for record in history
              for key, name in ((metric, "train"), (f"val_{metric}", "validation")) if record.get(key) is not None]
    y = {"field": "value", "type": "quantitative", "title": metric}
    if metric == "accuracy":
        y["scale"] = {"domain": [0, 1.02]}
    layers = [{"mark": {"type": "line", "point": True},
               "encoding": {"x": {"field": "epoch", "type": "quantitative"}, "y": y,
                            "color": {"field": "series", "type": "nominal", "title": None,
                                      "legend": {"orient": "bottom"}},
                            "strokeDash": {"field": "series", "type": "nominal", "legend": None,
                                           "scale": {"domain": ["validation", "train"], "range": [[1, 0], [2, 2]]}}}}]
    boundary = next((record["epoch"] for record in history if record.get("phase") == 2), None)
    if boundary is not None:
        layers.append({"data": {"values": [{"epoch": boundary - 0.5}]}, "mark": {"type": "rule", "strokeDash": [4, 4],
                       "color": "gray"}, "encoding": {"x": {"field": "epoch", "type": "quantitative"}}})
    if before is not None and metric == "accuracy":
        layers.append(_before_layer(before))
    return {"title": METRIC_TITLES.get(metric, metric), "height": height, "data": {"values": values},
            "layer": layers}


def _before_layer(before: dict) -> dict:
    """A starred point at epoch 0 labelled "before: 0.50 on val (10 images)"."""
    point = {"epoch": 0, "value": before["accuracy"], "label": format_before(before)}
    encoding = {"x": {"field": "epoch", "type": "quantitative"}, "y": {"field": "value", "type": "quantitative"}}
    return {"data": {"values": [point]}, "layer": [
        {"mark": {"type": "point", "shape": "diamond", "size": 120, "filled": True, "color": "gray"},
         "encoding": {**encoding, "tooltip": {"field": "label"}}},
        {"mark": {"type": "text", "align": "left", "dx": 8, "dy": -8, "color": "gray"},
         "encoding": {**encoding, "text": {"field": "label"}}}]}
