"""Two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy, the custom loop) against one process, on the
sample dataset: validation accuracy of the saved model and fine-tuning throughput.

Both runs train the same settings (MobileNetV2 224 px, ImageNet weights, the head chosen on cached embeddings, then
fine-tuning; one global batch of ``--batch-size``, split over the workers). Prints a Markdown table; asserts
nothing. On one machine the two workers share its cores, so this measures the overhead of the cluster, not a
speed-up. Usage: ``.venv/bin/python bench/bench_multiworker.py [--fine-tune-epochs 3]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import PROJECT_ROOT, setup_environment

scratch = setup_environment()

from core import runs  # noqa: E402
from core.data.sample import create_sample_dataset  # noqa: E402
from core.training.cluster import start_local_workers  # noqa: E402
from core.workspace import Workspace  # noqa: E402


def train_arguments(workspace, dataset_id, args, distribution):
    return ["train", dataset_id, "--workspace", str(workspace.root), "--distribution", distribution,
            "--backbone", "mobilenet_v2", "--image-size", "224", "--strategy", "fine-tune",
            "--fine-tune-epochs", str(args.fine_tune_epochs), "--batch-size", str(args.batch_size),
            "--early-stopping-patience", "0", "--json"]


def figures(workspace, run_id, wall_s, fit_images) -> dict:
    record = runs.load_run(workspace, run_id)
    history = runs.load_history(workspace, run_id)
    tuned = [h for h in history if h["phase"] == 2]
    seconds = sum(h["epoch_time"] for h in tuned)
    return {"val_accuracy": record["best_val_accuracy"], "last_epoch_val_accuracy": tuned[-1]["val_accuracy"],
            "fine_tune_s": seconds, "images_per_s": fit_images * len(tuned) / seconds, "wall_s": wall_s,
            "distribution": record.get("distribution")}


def one_process(args, dataset_id) -> tuple[Workspace, str, float]:
    workspace = Workspace.open(scratch / "one")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "core", *train_arguments(workspace, dataset_id, args, "default")],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    return workspace, json.loads(out.stdout.strip().splitlines()[-1])["run_id"], time.perf_counter() - started


def two_processes(args, dataset_id, source) -> tuple[Workspace, str, float]:
    workspace = Workspace.open(scratch / "two")
    (workspace.datasets_dir / dataset_id).symlink_to(source.datasets_dir / dataset_id)
    started = time.perf_counter()
    processes = start_local_workers(train_arguments(workspace, dataset_id, args, "multi-worker"), 2, logs=scratch)
    codes = [process.wait(timeout=3600) for process in processes]
    wall = time.perf_counter() - started
    if codes != [0, 0]:
        sys.exit(f"error: workers exited {codes}; see {scratch}/worker-*.log")
    (record,) = runs.list_runs(workspace)
    return workspace, record["run_id"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fine-tune-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    source = Workspace.open(scratch / "one")
    dataset = create_sample_dataset(source)
    fit_images, val_images = len(dataset.split_entries("train")), len(dataset.split_entries("val"))
    one = figures(*one_process(args, dataset.id), fit_images)
    two = figures(*two_processes(args, dataset.id, source), fit_images)
    print(f"Sample dataset: {fit_images} training and {val_images} validation images; MobileNetV2 224 px, ImageNet "
          f"weights, fine-tune {args.fine_tune_epochs} epochs, global batch {args.batch_size}.\n")
    print("| run | val accuracy (saved model) | val accuracy (last fine-tune epoch) | fine-tune images/s | "
          "fine-tune s | whole command s |")
    print("|---|---|---|---|---|---|")
    for name, row in (("one process", one), ("two workers on 127.0.0.1", two)):
        print(f"| {name} | {row['val_accuracy']:.3f} | {row['last_epoch_val_accuracy']:.3f} | "
              f"{row['images_per_s']:.1f} | {row['fine_tune_s']:.1f} | {row['wall_s']:.1f} |")
    gap = abs(one["val_accuracy"] - two["val_accuracy"]) * val_images
    print(f"\nValidation accuracy gap: {gap:.1f} images (goal: at most 1). Throughput, two workers / one process: "
          f"{two['images_per_s'] / one['images_per_s']:.2f}. Two-worker record: {two['distribution']}")


if __name__ == "__main__":
    main()
