"""The HTML report: self-contained, the honest headline with its split, user names escaped."""

from __future__ import annotations

import numpy as np

from core.delivery.report import render_report_html
from core.insight.evaluation import evaluate_predictions


def test_report_is_self_contained_names_the_headline_split_and_escapes_user_text():
    classes = ["<b>cats</b>", "dogs & co"]
    evaluation = evaluate_predictions([0, 0, 1, 1], np.eye(2)[[0, 1, 1, 1]], classes, split="test")
    run = {"run_id": "r1", "headline": {"accuracy": 0.75, "split": "test", "n": 4, "ci95": [0.3, 0.95],
                                        "method": "held-out"},
           "roles": {"headline_split": "test", "selection": "val"}, "epochs_run": 4, "status": "stopped"}
    history = [{"epoch": e, "phase": 1 if e < 3 else 2, "loss": 1.0 / e, "val_loss": 1.1 / e,
                "accuracy": 0.5 + e / 10, "val_accuracy": 0.5 + e / 12} for e in range(1, 5)]
    html = render_report_html(run, {"backbone": "mobilenet_v2", "image_size": 224}, classes,
                              evaluation=evaluation, history=history)
    assert "<script" not in html and "src=" not in html and "href=" not in html
    assert "0.750 on test (4 images" in html and "Measured on the test images" in html
    assert "&lt;b&gt;cats&lt;/b&gt;" in html and "<b>cats</b>" not in html and "dogs &amp; co" in html
    assert html.count("<svg") >= 2 + len(classes)  # two curves, one precision/recall bar per class
    assert "fine-tuning starts" in html and "stopped by hand" in html
    assert "accuracy 75.0% on 4 images" in html
