"""``python -m core predict MODEL_OR_RUN IMAGE...``: classify images with a run, bundle or .keras file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.workspace import Workspace


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="classify images with a run, an exported bundle or a .keras file")
    parser.add_argument("model", metavar="MODEL_OR_RUN", help="run id, bundle (.zip or folder) or .keras file")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    parser.add_argument("--top-k", type=int, default=3, help="classes to list per image (default 3)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="answer 'unknown' when the top probability is below this (0..1)")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    parser.add_argument("--workspace", default=None, help="workspace folder (default $TRANSFER_STUDIO_WORKSPACE)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from core.errors import ConfigError
    from core.models.prediction import Predictor

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1; got {args.top_k}.")
    # Only a run id needs the workspace; do not create one just to read a bundle.
    workspace = None if Path(args.model).exists() else Workspace.open(args.workspace)
    predictor = Predictor.load(args.model, workspace)
    for warning in predictor.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"runtime: {predictor.runtime_description}", file=sys.stderr)
    results = predictor.predict_images(args.images, top_k=args.top_k, unknown_threshold=args.threshold)
    if args.json:
        print(json.dumps(results))
        return 0
    for r in results:
        others = ", ".join(f"{label} {prob:.1%}" for label, prob in r["top_k"][1:])
        answer = f"unknown (best guess {r['label']})" if r["unknown"] else r["label"]
        print(f"{r['file']}: {answer} {r['probability']:.1%}" + (f"  [{others}]" if others else ""))
    return 0
