"""Tables of the Runs page and the sidebar."""

from __future__ import annotations

import time

import pandas as pd

from core.models.base_models import describe_base
from core.training.continuation import accuracy_before, format_before


def runs_table(records: list[dict]) -> pd.DataFrame:
    """One row per run, newest first, with the columns a person compares runs by."""
    rows = []
    for record in records:
        config = record.get("config", {})
        headline = record.get("headline") or {}
        accuracy = headline.get("accuracy")
        low, high = headline.get("ci95") or (None, None)
        rows.append({
            "when": time.strftime("%Y-%m-%d %H:%M", time.localtime(record.get("created_at", 0))),
            "run": record["run_id"],
            "dataset": record.get("dataset_id"),
            "backbone": config.get("backbone"),
            "base": describe_base(record),
            "strategy": config.get("strategy"),
            "accuracy": None if accuracy is None else round(accuracy, 4),
            "95% CI": "" if low is None else f"{low:.2f}-{high:.2f}",
            "on": f"{headline['split']} ({headline['n']} images)" if headline else "",
            "started from": _started_from(record),
            "epochs": record.get("epochs_run"),
            "duration (s)": (record.get("timings") or {}).get("total_s"),
            "status": record.get("status"),
            "weights": record.get("weights"),
        })
    return pd.DataFrame(rows, columns=["when", "run", "dataset", "backbone", "base", "strategy", "accuracy", "95% CI", "on",
                                       "started from", "epochs", "duration (s)", "status", "weights"])


def _started_from(record: dict) -> str:
    """``run X, before: 0.50 on val (10 images)`` for a continued run; empty for one trained from a backbone."""
    continued = record.get("continued_from")
    if not continued:
        return ""
    before = accuracy_before(record)
    return f"run {continued['run_id']}" + (f", {format_before(before)}" if before else "")
