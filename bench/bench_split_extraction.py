"""Does splitting embedding extraction over the workers pay? One process embeds every image of a generated set;
then two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy) each embed their share (every second image)
and gather every worker's rows by all-reduce: the product's pass (``core.models.features.extract_features`` with the
``WorkerShare`` of ``core.training.distributed_fit.worker_share``, as a multi-worker run makes it). Prints images/s both
ways and the largest difference between the gathered embeddings and the one-process ones; asserts nothing.

The pass is timed from a point all processes have reached (model built and warmed up with one batch) to the
gathered embeddings in the cache: decoding the images (``core.models.pipeline.image_batches``), a Keras forward pass
(``predict_on_batch``; MobileNetV2 with random weights costs what ImageNet weights cost) and writing the cache.
On one machine the two workers share its cores, so this shows the cost of the split there; on two machines each
worker has its own.

Usage: ``.venv/bin/python bench/bench_split_extraction.py [--images 20000] [--image-size 96] [--batch-size 32]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import PROJECT_ROOT, setup_environment

BENCH = Path(__file__).resolve()


def generate(folder: Path, count: int, classes: int = 10, size: int = 64) -> list[str]:
    """``count`` small JPEGs (``size`` px, a colour cast per class, as bench_large's); their paths in order."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        label = index % classes
        pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
        pixels[:, :, label % 3] += np.uint8(40 + 15 * label)
        path = folder / f"class_{label}" / f"{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def embed(role: str, paths_file: Path, out: Path, image_size: int, batch_size: int) -> None:
    """One process's part: all images (``one``) or its share (``worker``, TF_CONFIG names it); writes JSON."""
    import numpy as np

    strategy = None
    if role == "worker":
        from core.training.distribute import multi_worker_strategy

        strategy = multi_worker_strategy()  # before any other TensorFlow work
    from core.models.backbones import get_backbone
    from core.models.classifier import build_classifier, feature_extractor
    from core.models.features import extract_features
    from core.models.weights import resolve_weights
    from core.workspace import Workspace

    paths = json.loads(paths_file.read_text())
    spec = get_backbone("mobilenet_v2")
    model = build_classifier(spec, image_size=image_size, num_classes=10,
                             weights=resolve_weights(spec, image_size, "none"))
    extractor = feature_extractor(model)
    share = None
    if strategy is not None:
        from core.training.distributed_fit import sum_over_workers, worker_share

        share = _timed(worker_share(strategy))
    extractor.predict_on_batch(np.zeros((batch_size, image_size, image_size, 3), np.float32))  # warm-up
    if strategy is not None:
        sum_over_workers(strategy, [1.0])  # everyone is ready: start together
    workspace = Workspace.open(out.parent / f"workspace-{role}-{share.index if share else 0}")
    started = time.perf_counter()
    # The product's pass (core.models.features): each worker embeds its share, then the gather by all-reduce.
    features = extract_features(workspace, "bench", extractor, GeneratedSet(paths), image_size=image_size,
                                resize="squash", batch_size=batch_size, share=share)
    finished = time.perf_counter()
    np.save(out.with_suffix(".npy"), np.asarray(features["train"]))
    gather_s = share.gather.seconds if share else 0.0
    out.write_text(json.dumps({"task": share.index if share else 0, "workers": share.count if share else 1,
                               "images": len(paths),
                               "own_images": len(range(share.index, len(paths), share.count)) if share else len(paths),
                               "embed_s": finished - started - gather_s, "gather_s": gather_s,
                               "total_s": finished - started}))


class GeneratedSet:
    """The generated images as the one split of a dataset, as ``core.models.features.extract_features`` reads one."""

    id = name = "generated"
    splits = ("train",)

    def __init__(self, paths: list[str]):
        self._paths = paths

    def paths(self, split: str) -> list[str]:
        return self._paths

    def split_entries(self, split: str) -> list[str]:
        return self._paths


def _timed(share):
    """``share`` with a gather that adds up the seconds its all-reduces take (``gather.seconds``)."""
    from dataclasses import replace

    def gather(values):
        started = time.perf_counter()
        try:
            return share.gather(values)
        finally:
            gather.seconds += time.perf_counter() - started

    gather.seconds = 0.0
    return replace(share, gather=gather)


def run_one(scratch: Path, paths_file: Path, args) -> dict:
    out = scratch / "one.json"
    subprocess.run([sys.executable, str(BENCH), "--role", "one", "--paths", str(paths_file), "--out", str(out),
                    *_sizes(args)], cwd=PROJECT_ROOT, check=True)
    return json.loads(out.read_text())


def run_two(scratch: Path, paths_file: Path, args) -> list[dict]:
    from core.training.cluster import free_ports, tf_config

    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        environ = {**os.environ, "TF_CONFIG": tf_config(workers, index)}
        log = open(scratch / f"worker-{index}.log", "wb")  # noqa: SIM115
        processes.append(subprocess.Popen(
            [sys.executable, str(BENCH), "--role", "worker", "--paths", str(paths_file),
             "--out", str(scratch / f"worker-{index}.json"), *_sizes(args)],
            cwd=PROJECT_ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT))
    codes = [process.wait(timeout=7200) for process in processes]
    if codes != [0, 0]:
        sys.exit(f"error: workers exited {codes}; see {scratch}/worker-*.log")
    return [json.loads((scratch / f"worker-{index}.json").read_text()) for index in range(2)]


def _sizes(args) -> list[str]:
    return ["--image-size", str(args.image_size), "--batch-size", str(args.batch_size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--role", choices=("one", "worker"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--paths", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        sys.path.insert(0, str(PROJECT_ROOT))
        embed(args.role, args.paths, args.out, args.image_size, args.batch_size)
        return
    scratch = setup_environment()
    import numpy as np

    started = time.perf_counter()
    paths_file = scratch / "paths.json"
    paths_file.write_text(json.dumps(generate(scratch / "images", args.images)))
    print(f"generated {args.images} JPEGs of 64 px in {time.perf_counter() - started:.1f} s", flush=True)
    one = run_one(scratch, paths_file, args)
    two = run_two(scratch, paths_file, args)
    difference = float(np.abs(np.load(scratch / "one.npy") - np.load(scratch / "worker-0.npy")).max())
    slowest = max(two, key=lambda row: row["total_s"])
    print(f"\n{args.images} generated images, MobileNetV2 {args.image_size} px (Keras, random weights), batch "
          f"{args.batch_size}.\n")
    print("| run | embed s | gather s | total s | images/s |")
    print("|---|---|---|---|---|")
    print(f"| one process | {one['embed_s']:.1f} | | {one['total_s']:.1f} | {one['images'] / one['total_s']:.1f} |")
    for row in two:
        print(f"| worker {row['task']} of 2 on 127.0.0.1 ({row['own_images']} images) | {row['embed_s']:.1f} | "
              f"{row['gather_s']:.1f} | {row['total_s']:.1f} | |")
    print(f"| two workers, split and gathered | | | {slowest['total_s']:.1f} | "
          f"{args.images / slowest['total_s']:.1f} |")
    print(f"\nTwo workers / one process: {one['total_s'] / slowest['total_s']:.2f}x. Largest difference, gathered "
          f"vs one-process embeddings: {difference:.2e}.")


if __name__ == "__main__":
    main()
