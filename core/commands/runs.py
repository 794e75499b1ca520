"""``python -m core runs``: list the runs of a workspace."""

from __future__ import annotations

import json
import time

from core.workspace import Workspace


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("runs", help="list training runs")
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run)


def run(args) -> int:
    from core.data.roles import format_headline
    from core.runs import list_runs
    from core.training.continuation import accuracy_before, format_before

    records = list_runs(Workspace.open(args.workspace))
    if args.json:
        fields = ("run_id", "status", "dataset_id", "best_val_accuracy", "val_loss", "epochs_run", "timings",
                  "created_at", "weights", "error", "headline")
        rows = [{**{key: r.get(key) for key in fields}, "backbone": r["config"]["backbone"],
                 "strategy": r["config"]["strategy"], "accuracy_before": accuracy_before(r)} for r in records]
        print(json.dumps(rows))
        return 0
    for r in records:
        headline = r.get("headline") or {}
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("created_at", 0)))
        print(f"{r['run_id']}  {when}  {r['status']:<11} {r['config']['backbone']:<18} "
              f"{r['config']['strategy']:<18} accuracy {format_headline(headline)}"
              + (f" ({format_before(accuracy_before(r))})" if accuracy_before(r) else ""))
    if not records:
        print("no runs yet")
    return 0
