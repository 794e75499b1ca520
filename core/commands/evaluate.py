"""``python -m core evaluate RUN``: accuracy, per-class metrics and confusion matrix of a run."""

from __future__ import annotations

import json

from core.workspace import Workspace


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a run on its validation or test split, or on a dataset")
    parser.add_argument("run_id", metavar="RUN", help="run id (see `python -m core runs`)")
    parser.add_argument("--split", choices=("val", "test", "train", "all"), default=None,
                        help="split to evaluate (test only when the dataset has one); default val, or all with "
                             "--dataset on a run that has no dataset of its own (an imported one)")
    parser.add_argument("--dataset", metavar="DATASET_ID", default=None,
                        help="score the run on this dataset instead of its own; class names must match, up to "
                             "case and spacing")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--records", action="store_true", help="with --json: include one record per image")
    parser.add_argument("--workspace", default=None, help="workspace folder (default $TRANSFER_STUDIO_WORKSPACE)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from core.insight.evaluation import evaluate_run

    workspace = Workspace.open(args.workspace)
    dataset_id, mapping, split = _dataset_and_mapping(workspace, args)
    result = evaluate_run(workspace, args.run_id, split, dataset_id=dataset_id, class_mapping=mapping)
    if args.json:
        print(json.dumps({**result.to_dict(include_records=args.records), "dataset_id": dataset_id,
                          "class_mapping": mapping}))
        return 0
    print(f"run {args.run_id}, dataset {dataset_id}, split {result.split}: {result.num_images} images")
    for data_name, model_name in (mapping or {}).items():
        if data_name != model_name:
            print(f"  dataset class {data_name!r} scored as the model's {model_name!r}")
    print(f"accuracy {result.accuracy:.4f}   macro F1 {result.macro_f1:.4f}\n")
    width = max(len("class"), *(len(c) for c in result.classes))
    print(f"{'class':<{width}}  precision  recall     f1  support")
    for row in result.per_class:
        print(f"{row['class']:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:5.4f}  "
              f"{row['support']:7d}")
    print("\nconfusion matrix (rows: true, columns: predicted)")
    print(result.confusion_frame().to_string())
    return 0


def _dataset_and_mapping(workspace, args) -> tuple[str, dict | None, str]:
    """The dataset to score on, the class mapping (None for the run's own dataset) and the split."""
    from core.data.class_mapping import match_classes
    from core.data.datasets import load_dataset
    from core.runs import load_run

    record = load_run(workspace, args.run_id)
    own = (record.get("config") or {}).get("dataset_id")
    if not args.dataset or args.dataset == own:
        return own, None, args.split or "val"
    dataset = load_dataset(workspace, args.dataset)
    match = match_classes(record.get("classes") or [], dataset.classes, model=f"run {args.run_id}",
                          dataset=f"dataset {dataset.id}")
    return dataset.id, match.mapping, args.split or ("all" if not own else "val")
