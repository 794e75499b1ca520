"""``python -m core check DATASET_ID [--backbone NAME] [--json]``: the data health check of one dataset."""

from __future__ import annotations

import json

from core.workspace import Workspace

SHOWN = 10


def add_parser(subparsers) -> None:
    """Register the ``check`` command."""
    parser = subparsers.add_parser(
        "check", help="find likely label mistakes, near-duplicates, leakage and outliers in a dataset",
        description="Ranks the images whose label is most likely wrong (confident learning over out-of-fold and "
                    "neighbour probabilities of the cached embeddings), with a suggested label; groups "
                    "near-duplicate images (perceptual hash and embedding similarity) and those across splits "
                    "(leakage); lists outliers.")
    parser.add_argument("dataset_id", metavar="DATASET_ID", help="dataset id (see the Data page or `ingest`)")
    parser.add_argument("--backbone", default="mobilenet_v2", help="backbone name (default mobilenet_v2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--workspace", default=None, help="workspace folder (default $TRANSFER_STUDIO_WORKSPACE)")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Print the report (JSON: ``label_issues``, ``near_duplicates``, ``leakage``, ``outliers``)."""
    from core.insight.health import CHECK_FIELDS, check_dataset

    report = check_dataset(Workspace.open(args.workspace), args.dataset_id, args.backbone)
    if args.json:
        print(json.dumps({key: report[key] for key in CHECK_FIELDS}))
        return 0
    counts = report["counts"]
    print(f"{report['dataset_id']}: {counts['images']} images checked with {report['backbone']}")
    print(f"likely label issues: {counts['label_issues']} (most likely first)")
    for issue in report["label_issues"][:SHOWN]:
        print(f"  {issue['score']:.3f}  {issue['source']}  labelled {issue['label']!r}, "
              f"looks like {issue['suggested']!r}")
    print(f"near-duplicate groups: {counts['near_duplicate_groups']} ({counts['conflict_groups']} with "
          f"conflicting labels), across splits (leakage): {counts['leakage_groups']}")
    for group in report["leakage"][:SHOWN]:
        print("  " + ", ".join(f"{item['source']} ({item['split']})" for item in group))
    print(f"outliers: {counts['outliers']}")
    for item in report["outliers"][:SHOWN]:
        print(f"  {item['score']:.1f}  {item['source']}")
    return 0
