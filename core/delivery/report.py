"""The model card as one self-contained HTML page, for people who do not open the app.

Everything is inline (CSS, SVG charts, tables): no script, no network, no file next to it, so the page opens
the same from a mail attachment, a shared drive or the bundle. Every user-supplied text is HTML-escaped.
"""

from __future__ import annotations

import time
from collections import Counter
from html import escape

from core.data.roles import format_headline
from core.run_state import RunStatus

STYLE = """
body{font-family:system-ui,sans-serif;color:#1c2333;max-width:960px;margin:2em auto;padding:0 1em;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #dde3ee}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #dde3ee;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}.headline{font-size:1.3em;background:#f2f5fa;padding:.6em 1em}
.charts{display:flex;flex-wrap:wrap;gap:1em}.note{color:#5a6478}svg text{font-size:11px;fill:#1c2333}
"""
WIDTH, HEIGHT, PAD = 420, 220, 36


def render_report_html(run: dict, config: dict, classes, *, evaluation=None, dataset=None, history=None,
                       note: str | None = None) -> str:
    """A self-contained HTML model card.

    Args:
        run: the run record (run.json).
        config: the run config (with the resolved ``image_size``).
        classes: class names in output order.
        evaluation: an ``EvaluationResult`` on the headline split, or None.
        dataset: the run's ``Dataset``, or None when it is gone.
        history: the run's epoch records (learning curves), or None.
        note: why metrics are missing, when they are.
    """
    run_id = escape(str(run.get("run_id", "?")))
    created = run.get("created_at")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if isinstance(created, (int, float)) else "?"
    roles = run.get("roles") or {}
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Model card: {run_id}</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Model card: {run_id}</h1>",
        f"<p>Image classifier trained with Transfer Studio on {when}. It tells apart {len(classes)} classes: "
        + ", ".join(f"<b>{escape(str(c))}</b>" for c in classes) + ".</p>",
        f"<p class='headline'>Accuracy: {escape(format_headline(run.get('headline')))}</p>",
        f"<p class='note'>Measured on the {escape(str(roles.get('headline_split', 'held-out')))} images, which "
        f"chose nothing in training; epochs and weights were chosen on: "
        f"{escape(str(roles.get('selection', '?')))}.</p>",
        *([f"<p class='note'>Cross-validated estimate over every image: "
           f"{escape(format_headline(run['cv_estimate']))}.</p>"] if run.get("cv_estimate") else []),
        "<h2>Data</h2>", _data_table(config, classes, dataset),
        "<h2>Model and training</h2>", _training_list(run, config),
        "<h2>Learning curves</h2>", _curves(history or []),
        "<h2>Results per class</h2>", _metrics(evaluation, note),
        "<h2>Intended use and limits</h2>",
        "<p>Sorting or pre-screening images that look like the training images, into exactly these classes, "
        "with a person checking the answers that matter. The model always answers with one of its classes, even "
        "for an image of something else; expect lower accuracy on images from other cameras, lighting or "
        "populations. Not validated for medical, safety-critical or legal decisions.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _data_table(config: dict, classes, dataset) -> str:
    if dataset is None:
        return (f"<p>Dataset <code>{escape(str(config.get('dataset_id', '?')))}</code> (no longer in the "
                "workspace; counts unknown).</p>")
    counts = Counter((e.split, e.label) for e in dataset.entries)
    splits = [s for s in ("train", "val", "test") if any(k[0] == s for k in counts)]
    rows = "".join(f"<tr><td>{escape(str(name))}</td>" + "".join(f"<td>{counts[(s, name)]}</td>" for s in splits)
                   + "</tr>" for name in classes)
    head = "".join(f"<th>{s}</th>" for s in splits)
    return (f"<p>{escape(dataset.name)} (<code>{escape(dataset.id)}</code>), {len(dataset.entries)} images.</p>"
            f"<table><tr><th>class</th>{head}</tr>{rows}</table>")


def _training_list(run: dict, config: dict) -> str:
    items = [f"Backbone: <code>{escape(str(config.get('backbone', '?')))}</code>, pretrained weights: "
             f"{escape(str(run.get('weights') or config.get('weights')))}",
             f"Strategy: {escape(str(config.get('strategy', '?')))}; epochs run: {run.get('epochs_run', '?')}",
             f"Input: {config.get('image_size', '?')} px RGB, resize mode {escape(str(config.get('resize', 'squash')))}"]
    if run.get("head_selection"):
        items.append(f"Head chosen by {run['head_selection']['folds']}-fold cross-validation: "
                     f"<code>{escape(str(run['head_selection']['chosen']))}</code>")
    if run.get("status") == RunStatus.STOPPED:
        items.append("Training was stopped by hand; the best model seen so far was kept.")
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def _curves(history: list[dict]) -> str:
    if not history:
        return "<p class='note'>No epochs recorded (the model was imported).</p>"
    return "<div class='charts'>" + _curve_svg(history, "loss") + _curve_svg(history, "accuracy") + "</div>"


def _curve_svg(history: list[dict], metric: str) -> str:
    """One metric's train (dotted) and validation (solid) lines, the axis fitted to the data."""
    series = {name: [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
              for key, name in ((metric, "train"), (f"val_{metric}", "validation"))}
    values = [v for points in series.values() for _, v in points]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = max(high - low, 0.02)
    low, high = low - 0.08 * span, high + 0.08 * span
    epochs = [r["epoch"] for r in history]
    first, last = min(epochs), max(max(epochs), min(epochs) + 1)

    def x(epoch):
        return PAD + (epoch - first) / (last - first) * (WIDTH - 2 * PAD)

    def y(value):
        return HEIGHT - PAD - (value - low) / (high - low) * (HEIGHT - 2 * PAD)

    lines = [f"<text x='{PAD}' y='14'>{metric} (dotted: train, solid: validation)</text>",
             f"<line x1='{PAD}' y1='{HEIGHT - PAD}' x2='{WIDTH - PAD}' y2='{HEIGHT - PAD}' stroke='#999'/>",
             f"<text x='2' y='{y(high - 0.08 * span) + 4:.1f}'>{high - 0.08 * span:.3f}</text>",
             f"<text x='2' y='{y(low + 0.08 * span) + 4:.1f}'>{low + 0.08 * span:.3f}</text>",
             f"<text x='{WIDTH / 2 - 15}' y='{HEIGHT - 8}'>epoch</text>"]
    boundary = next((r["epoch"] for r in history if r.get("phase") == 2), None)
    if boundary is not None:
        bx = x(boundary - 0.5)
        lines.append(f"<line x1='{bx:.1f}' y1='{PAD}' x2='{bx:.1f}' y2='{HEIGHT - PAD}' stroke='gray' "
                     f"stroke-dasharray='4 4'><title>fine-tuning starts</title></line>")
        lines[0] = lines[0].replace(")</text>", "; dashed: fine-tuning starts)</text>")
    for (name, points), dash in zip(series.items(), ("2 3", ""), strict=True):
        if points:
            path = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in points)
            lines.append(f"<polyline points='{path}' fill='none' stroke='#2f6fde' stroke-width='2' "
                         f"stroke-dasharray='{dash}'><title>{name}</title></polyline>")
    return f"<svg width='{WIDTH}' height='{HEIGHT}' role='img' aria-label='{metric}'>" + "".join(lines) + "</svg>"


def _metrics(evaluation, note) -> str:
    if evaluation is None:
        return f"<p class='note'>{escape(note or 'Not evaluated.')}</p>"
    split = {"val": "validation", "test": "test"}.get(evaluation.split, evaluation.split)
    rows = "".join(
        f"<tr><td>{escape(str(row['class']))}</td><td>{row['precision']:.3f}</td><td>{row['recall']:.3f}</td>"
        f"<td>{row['f1']:.3f}</td><td>{row['support']}</td><td>{_bars(row)}</td></tr>"
        for row in evaluation.per_class)
    return (f"<p>On the {escape(split)} split: accuracy {evaluation.accuracy:.1%} on {evaluation.num_images} "
            f"images, macro F1 {evaluation.macro_f1:.3f}.</p>"
            "<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>images</th>"
            f"<th>precision / recall</th></tr>{rows}</table>"
            "<h2>Confusion matrix</h2><p class='note'>Rows: true class; columns: predicted class; the shade is the "
            "share of the row.</p>" + _confusion(evaluation))


def _bars(row: dict) -> str:
    return ("<svg width='120' height='22'>"
            f"<rect x='0' y='2' width='{120 * row['precision']:.1f}' height='8' fill='#9bb7ec'/>"
            f"<rect x='0' y='12' width='{120 * row['recall']:.1f}' height='8' fill='#2f6fde'/></svg>")


def _confusion(evaluation) -> str:
    names = [escape(str(c)) for c in evaluation.classes]
    head = "".join(f"<th>{name}</th>" for name in names)
    body = []
    for name, row in zip(names, evaluation.confusion, strict=True):
        total = max(sum(row), 1)
        cells = "".join(f"<td style='background:rgba(47,111,222,{0.85 * v / total:.2f});"
                        f"color:{'white' if v / total > 0.5 else '#1c2333'}'>{v}</td>" for v in row)
        body.append(f"<tr><th>{name}</th>{cells}</tr>")
    return f"<table><tr><th>true \\ predicted</th>{head}</tr>{''.join(body)}</table>"


def run_report(workspace, run_id: str, *, evaluation=None) -> str:
    """The HTML report of a run, evaluated on its headline split (``evaluation`` reused when it is that one)."""
    from core.insight.evaluation import evaluate_for_card
    from core.models.prediction import Predictor
    from core.runs import load_history, load_run

    run = load_run(workspace, run_id)
    predictor = Predictor.from_run(workspace, run_id)
    split = (run.get("headline") or {}).get("split", "val")
    evaluation, dataset, note = evaluate_for_card(workspace, run_id, predictor, evaluation, split)
    config = {**(run.get("config") or {}), "image_size": predictor.image_size, "resize": predictor.resize}
    return render_report_html(run, config, predictor.classes, evaluation=evaluation, dataset=dataset,
                              history=load_history(workspace, run_id), note=note)
