"""The MODEL_CARD.md written into every exported bundle (plain Markdown, no templating engine)."""

from __future__ import annotations

import time
from collections import Counter

from core.data.roles import format_headline


def _split_name(evaluation) -> str:
    if evaluation is None:
        return "held-out split"
    return {"val": "validation split", "test": "test split"}.get(evaluation.split, f"{evaluation.split} split")


def render_model_card(run: dict, config: dict, classes, evaluation=None, dataset=None, note=None) -> str:
    """Markdown model card: data, model, training, metrics, confusion matrix, intended use and limits.

    Args:
        run: the run record (run.json).
        config: the run config with the resolved ``image_size`` and ``resize``.
        classes: class names in output order.
        evaluation: an ``EvaluationResult`` on the validation split, or None.
        dataset: the run's ``Dataset``, or None when it is no longer in the workspace.
        note: why metrics are missing, when they are.
    """
    created = run.get("created_at")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if isinstance(created, (int, float)) else "?"
    lines = [
        f"# Model card: {run.get('run_id', '?')}",
        "",
        f"Image classifier trained with Transfer Studio on {when}. It tells apart {len(classes)} classes: "
        + ", ".join(f"`{c}`" for c in classes) + ".",
        "",
        "## Data",
        "",
        *_data_lines(config, classes, dataset),
        "",
        "## Model and training",
        "",
        *_base_lines(run, config),
        f"- Strategy: {config.get('strategy', '?')}; epochs run: {run.get('epochs_run', '?')}",
        f"- Input: {config['image_size']}x{config['image_size']} RGB, raw pixel values 0..255 "
        f"(resize mode `{config.get('resize', 'squash')}`); preprocessing is inside the model.",
        f"- Headline accuracy: {format_headline(run.get('headline'))}; measured on images that chose nothing "
        f"(epochs and weights were chosen on: {(run.get('roles') or {}).get('selection', '?')})",
        *([f"- Cross-validated estimate of the head over every image: {format_headline(run['cv_estimate'])}"]
          if run.get("cv_estimate") else []),
        *([f"- Head chosen by {run['head_selection']['folds']}-fold cross-validation: "
           f"`{run['head_selection']['chosen']}`"] if run.get("head_selection") else []),
        f"- Libraries: {_versions(run.get('versions') or {})}",
        "",
        f"## Metrics ({_split_name(evaluation)})",
        "",
        *_metric_lines(evaluation, note),
        "",
        "## Intended use",
        "",
        "Sorting or pre-screening images that look like the training images, into exactly these classes, "
        "with a person checking the answers that matter. Use `predict.py` in this bundle (or the app) so "
        "images are prepared the same way as in training.",
        "",
        "## Limits",
        "",
        "- The model always answers with one of its classes, even for an image of something else; "
        "use a confidence threshold to answer \"unknown\" when the top probability is low.",
        "- Accuracy was measured on held-out images drawn from the same source as the training data (the 95% "
        "interval above says how far the true figure may be); expect lower accuracy on images from other "
        "cameras, lighting, or populations.",
        "- Not validated for medical, safety-critical or legal decisions.",
        "",
    ]
    return "\n".join(lines)


def _base_lines(run: dict, config: dict) -> list[str]:
    """What the model was built on: a registry backbone, an earlier run, or an uploaded file with its hash."""
    base = run.get("base")
    if not base:
        return [f"- Backbone: `{config.get('backbone', '?')}`, pretrained weights: "
                f"{run.get('weights') or config.get('weights')}"]
    if base.get("kind") == "run":
        return [f"- Base: run `{base['run_id']}` below its head (its preprocessing, backbone and pooling; model "
                f"file sha256 `{base['model_sha256']}`)"]
    return [f"- Base: uploaded file `{base['file_name']}` (sha256 `{base['sha256']}`), cut at layer "
            f"`{base['cut_layer']}`, pixels scaled {base['input_scaling']} inside the model"]


def _data_lines(config: dict, classes, dataset) -> list[str]:
    if dataset is None:
        return [f"- Dataset `{config.get('dataset_id', '?')}` (no longer in the workspace; counts unknown)."]
    counts = Counter((e.split, e.label) for e in dataset.entries)
    splits = [s for s in ("train", "val", "test") if any(k[0] == s for k in counts)]
    lines = [f"- Dataset: {dataset.name} (`{dataset.id}`), {len(dataset.entries)} images", "",
             "| class | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for name in classes:
        lines.append(f"| {_cell(name)} | " + " | ".join(str(counts[(s, name)]) for s in splits) + " |")
    return lines


def _metric_lines(evaluation, note) -> list[str]:
    if evaluation is None:
        return [note or "Not evaluated."]
    lines = [f"- Accuracy: {_pct(evaluation.accuracy)} on {evaluation.num_images} images",
             f"- Macro F1: {evaluation.macro_f1:.3f}", "",
             "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for row in evaluation.per_class:
        lines.append(f"| {_cell(row['class'])} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['f1']:.3f} | {row['support']} |")
    names = [_cell(c) for c in evaluation.classes]
    lines += ["", "Confusion matrix (rows: true class, columns: predicted class):", "",
              "| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, evaluation.confusion, strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _pct(value) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "not recorded"


def _versions(versions: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "not recorded"
