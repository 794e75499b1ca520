"""``python -m core ingest PATH``: check and store a zip or folder as a dataset."""

from __future__ import annotations

import json
import sys

from core.data.datasets import ingest
from core.workspace import Workspace


def add_parser(subparsers) -> None:
    """Register the ``ingest`` command."""
    parser = subparsers.add_parser("ingest", help="ingest a zip or folder of labelled images",
                                   description="Check, decode and store a labelled image zip or folder.")
    parser.add_argument("path", help="zip file or folder (class folders, split folders or labels.csv)")
    parser.add_argument("--workspace", default=None, help="workspace folder (default $TRANSFER_STUDIO_WORKSPACE "
                                                          "or ./workspace)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of each class for validation when the zip has no val split (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated split (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a text report")
    parser.set_defaults(run=run)


def _report(dataset) -> dict:
    summary = dataset.summary
    return {
        "dataset_id": dataset.id,
        "classes": list(dataset.classes),
        "counts": summary["counts"],
        "rejected": summary["rejected"],
        "duplicates": summary["duplicates"],
        "warnings": summary["warnings"],
    }


def _print_text(dataset) -> None:
    summary = dataset.summary
    print(f"dataset {dataset.id} ({dataset.root})")
    for split, counts in summary["counts"].items():
        print(f"  {split}: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    for item in summary["rejected"]:
        print(f"  rejected {item['file']}: {item['reason']}")
    for warning in summary["warnings"]:
        print(f"  warning: {warning['message']}")


def run(args) -> int:
    """Ingest ``args.path``; print the report; 0 on success (errors are raised as DatasetError)."""
    workspace = Workspace.open(args.workspace)
    live = not args.json and sys.stderr.isatty()

    def progress(fraction: float, message: str) -> None:
        if live:
            print(f"\r{fraction:4.0%} {message[:60]:<60}", end="", file=sys.stderr, flush=True)

    try:
        dataset = ingest(args.path, workspace, val_fraction=args.val_fraction, seed=args.seed, progress=progress)
    finally:
        if live:
            print(file=sys.stderr)
    if args.json:
        print(json.dumps(_report(dataset), ensure_ascii=False))
    else:
        _print_text(dataset)
    return 0
