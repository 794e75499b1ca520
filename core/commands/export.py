"""``python -m core export RUN --format bundle|tflite|savedmodel --out PATH``."""

from __future__ import annotations

import json

from core.workspace import Workspace


def add_parser(subparsers) -> None:
    from core.delivery.export import FORMATS

    parser = subparsers.add_parser("export", help="export a run's model (bundle zip, TFLite, SavedModel)")
    parser.add_argument("run_id", metavar="RUN", help="run id (see `python -m core runs`)")
    parser.add_argument("--format", choices=FORMATS, default="bundle", help="what to write (default: bundle)")
    parser.add_argument("--out", required=True, help="file or folder to write")
    parser.add_argument("--quantize", choices=("dynamic",), default=None,
                        help="TFLite only: dynamic-range quantization (int8 weights, ~4x smaller)")
    parser.add_argument("--check", action="store_true",
                        help="also compare the exported format with the in-app model on the validation images")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--workspace", default=None, help="workspace folder (default $TRANSFER_STUDIO_WORKSPACE)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from core.delivery.export import check_parity, describe_parity, export_model

    workspace = Workspace.open(args.workspace)
    path = export_model(workspace, args.run_id, args.format, args.out, quantize=args.quantize)
    result = {"run_id": args.run_id, "format": args.format, "quantize": args.quantize, "path": str(path)}
    if args.check:
        fmt = "tflite_dynamic" if args.quantize else args.format
        result["parity"] = check_parity(workspace, args.run_id, [fmt])[fmt]
    if args.json:
        print(json.dumps(result))
    else:
        print(f"wrote {path}")
        if args.check:
            print(describe_parity("tflite_dynamic" if args.quantize else args.format, result["parity"]))
    return 0 if not args.check or result["parity"]["passed"] else 1
