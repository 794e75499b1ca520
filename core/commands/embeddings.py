"""``python -m core embeddings DATASET --backbone NAME``: export a dataset's embeddings as CSV or NumPy."""

from __future__ import annotations

import sys
from pathlib import Path

from core.config import DEFAULT_RESIZE
from core.workspace import Workspace, atomic_write_bytes


def add_parser(subparsers) -> None:
    """Register the ``embeddings`` command."""
    parser = subparsers.add_parser(
        "embeddings", help="export a dataset's embeddings (the pretrained model as a feature extractor)",
        description="Write the pooled backbone features of every image of a dataset, with file names, labels and "
                    "splits, as CSV (file, label, split, f0..fN) or a NumPy .npz archive (embeddings, files, labels, "
                    "splits). "
                    "Reuses the training engine's embedding cache.")
    parser.add_argument("dataset_id", metavar="DATASET", help="dataset id (see the Data page or `ingest`)")
    parser.add_argument("--backbone", default="mobilenet_v2", help="backbone name (default mobilenet_v2)")
    parser.add_argument("--image-size", type=int, default=None, help="input size (default: the backbone's)")
    parser.add_argument("--resize", choices=("squash", "crop", "pad"), default=DEFAULT_RESIZE,
                        help=f"how images reach the input size (default {DEFAULT_RESIZE}, as in training)")
    parser.add_argument("--weights", choices=("imagenet", "none"), default="imagenet",
                        help="pretrained ImageNet weights or random init (default imagenet)")
    parser.add_argument("--format", choices=("csv", "npz"), default=None,
                        help="csv or npz (a NumPy .npz archive); default from --out's suffix, else csv")
    parser.add_argument("--out", default=None, help="output file (default <DATASET>-<backbone>.csv/.npz here)")
    parser.add_argument("--workspace", default=None, help="workspace folder (default $TRANSFER_STUDIO_WORKSPACE)")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Compute (or reuse) the embeddings and write them; prints the output path."""
    from core.data.datasets import load_dataset
    from core.insight.projection import embeddings_csv, embeddings_npz, load_embeddings

    workspace = Workspace.open(args.workspace)
    dataset = load_dataset(workspace, args.dataset_id)
    fmt = args.format or ("npz" if args.out and Path(args.out).suffix == ".npz" else "csv")
    out = Path(args.out or f"{dataset.id}-{args.backbone}.{fmt}")
    found = load_embeddings(workspace, dataset, args.backbone, image_size=args.image_size, resize=args.resize,
                            weights=args.weights)
    atomic_write_bytes(out, embeddings_npz(found) if fmt == "npz" else embeddings_csv(found))
    rows, dim = found.embeddings.shape
    print(f"wrote {rows} embeddings of {dim} features ({fmt}) to {out}", file=sys.stderr)
    print(out)
    return 0
