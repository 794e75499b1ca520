"""Plotly figures shared by the Train and Runs pages."""

from __future__ import annotations

import plotly.graph_objects as go

METRIC_TITLES = {"loss": "Loss", "accuracy": "Accuracy"}


def curves_figure(histories: dict[str, list[dict]], metric: str, height: int = 320) -> go.Figure:
    """Train and validation ``metric`` per epoch for one or more runs, with the fine-tuning start marked.

    Args:
        histories: ``{label: epoch records}``; one run gives "train" and "validation" lines, several give two
            lines per run.
        metric: ``loss`` or ``accuracy``.
    """
    figure = go.Figure()
    single = len(histories) == 1
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
