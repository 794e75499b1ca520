"""``python -m core import PATH``: open a Teachable Machine export as a run of this workspace."""

from __future__ import annotations

import functools
import json

from core.workspace import Workspace


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "import", help="import a Teachable Machine image model (Keras or TensorFlow.js download) as a run")
    parser.add_argument("path", metavar="PATH",
                        help="converted_keras.zip, keras_model.h5 (labels.txt beside it), the TensorFlow.js zip, "
                             "model.json (weights.bin and metadata.json beside it) or a folder of those files")
    parser.add_argument("--name", default=None, help="a name for the run (default: the export's model name)")
    parser.add_argument("--json", action="store_true", help="print one JSON object: run_id, classes, format")
    parser.add_argument("--workspace", default=None, help="workspace folder (default $TRANSFER_STUDIO_WORKSPACE)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from core.delivery.teachable_model import import_teachable

    # The workspace is opened only once the export is known to import: a refusal writes nothing.
    record = import_teachable(functools.partial(Workspace.open, args.workspace), args.path, name=args.name)
    fmt = record["imported_from"]["format"]
    if args.json:
        print(json.dumps({"run_id": record["run_id"], "classes": record["classes"], "format": fmt}))
        return 0
    print(f"imported {record['run_id']} ({record['weights']}): {len(record['classes'])} classes: "
          f"{', '.join(record['classes'])}")
    return 0
