"""``python -m core evaluate RUN``: accuracy, per-class metrics and confusion matrix of a run."""

from __future__ import annotations

import json

from core.workspace import Workspace


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a trained run on its validation or test split")
    parser.add_argument("run_id", metavar="RUN", help="run id (see `python -m core runs`)")
    parser.add_argument("--split", choices=("val", "test"), default="val",
                        help="split to evaluate (test only when the dataset has one)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--records", action="store_true", help="with --json: include one record per image")
    parser.add_argument("--workspace", default=None, help="workspace folder (default $TRANSFER_STUDIO_WORKSPACE)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from core.evaluation import evaluate_run

    result = evaluate_run(Workspace.open(args.workspace), args.run_id, args.split)
    if args.json:
        print(json.dumps(result.to_dict(include_records=args.records)))
        return 0
    print(f"run {args.run_id}, split {result.split}: {result.num_images} images")
    print(f"accuracy {result.accuracy:.4f}   macro F1 {result.macro_f1:.4f}\n")
    width = max(len("class"), *(len(c) for c in result.classes))
    print(f"{'class':<{width}}  precision  recall     f1  support")
    for row in result.per_class:
        print(f"{row['class']:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:5.4f}  "
              f"{row['support']:7d}")
    print("\nconfusion matrix (rows: true, columns: predicted)")
    print(result.confusion_frame().to_string())
    return 0
