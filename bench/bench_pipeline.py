"""Does the input pipeline keep up with the extractor? Decoding + resizing alone, the LiteRT extractor alone, and
the embedding pass with both overlapped (``core.models.pipeline.image_batches`` feeding ``LiteRTModel``), on the stored
images of a shared dataset (MobileNetV2 224 px, ImageNet weights, centre crop, batch 32).

Two budgets of threads:
- the whole machine for each stage (the product's setting: decoding threads and XNNPACK threads on every core);
  here both stages want the same cores, so together they can run no faster than the sum of their CPU costs allows;
- one core each (1 decoding thread, 1 XNNPACK thread, each stage pinned to a core of its own): what overlap alone
  gives when the stages do not compete for cores, as on a machine with cores to spare.

For each it prints images/s of the pipeline alone, the extractor alone, both together, and both together as a share
of the slower stage (the issue's goal: within 10% of it), plus the bound the CPU sets when both share every core
(``1 / (1/pipeline + 1/extractor)`` when each alone uses every core). The converted model is made first if this
machine has none (not timed). Prints figures; asserts nothing.

Usage: ``.venv/bin/python bench/bench_pipeline.py [--dataset hymenoptera] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import setup_environment, shared_zip

scratch = setup_environment()


def converted_mobilenet(size: int = 224):
    """(TFLite bytes, key) of the frozen MobileNetV2 extractor, from this machine's store or converted now."""
    from core.models.backbones import get_backbone
    from core.models.classifier import build_classifier, feature_extractor
    from core.models.litert import ConvertedStore, convert_and_store, extractor_key
    from core.models.weights import resolve_weights

    spec = get_backbone("mobilenet_v2")
    weights = resolve_weights(spec, size, "imagenet")
    store = ConvertedStore()
    key = extractor_key("mobilenet_v2", size, weights.fingerprint)
    content = store.load(key)
    if content is None:
        model = build_classifier(spec, image_size=size, num_classes=2, weights=weights)
        content, _ = convert_and_store(feature_extractor(model), key, store, backbone="mobilenet_v2",
                                       image_size=size, weights=weights.fingerprint)
    return content


def pinned(core: int | None):
    """Pin the calling thread to ``core`` (None: every core); returns the affinity it had."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, before if core is None else {core})
    return before


def one_budget(paths, content, *, threads: int, workers: int, split_cores: bool) -> dict:
    import numpy as np

    from core.config import DEFAULT_RESIZE
    from core.models.litert import LiteRTModel
    from core.models.pipeline import image_batches

    cores = sorted(os.sched_getaffinity(0))
    model = LiteRTModel(content, threads=threads)
    model.predict_on_batch(np.zeros((32, 224, 224, 3), np.float32))  # allocation and weight packing
    decode_core, infer_core = (cores[0], cores[1]) if split_cores else (None, None)

    def stream():  # decoding threads start inside image_batches and inherit the affinity of their creator
        everything = pinned(decode_core)
        batches = image_batches(paths, image_size=224, batch_size=32, resize=DEFAULT_RESIZE, workers=workers)
        first = next(batches)
        os.sched_setaffinity(0, everything if infer_core is None else {infer_core})
        yield first
        yield from batches

    started = time.perf_counter()
    batches = list(stream())
    pipeline = len(paths) / (time.perf_counter() - started)
    started = time.perf_counter()
    for images in batches:
        model.predict_on_batch(images)
    extractor = len(paths) / (time.perf_counter() - started)
    del batches
    started = time.perf_counter()
    for images in stream():
        model.predict_on_batch(images)
    both = len(paths) / (time.perf_counter() - started)
    os.sched_setaffinity(0, set(cores))
    return {"pipeline": pipeline, "extractor": extractor, "both": both}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="hymenoptera")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from core.data.datasets import ingest
    from core.workspace import Workspace

    dataset = ingest(shared_zip(f"{args.dataset}.zip"), Workspace.open(scratch / "workspace"))
    paths = [p for split in dataset.splits for p in dataset.paths(split)]
    content = converted_mobilenet()
    cores = len(os.sched_getaffinity(0))
    print(f"{args.dataset}: {len(paths)} stored images, MobileNetV2 224 px on LiteRT, {cores} cores, "
          f"load average {os.getloadavg()[0]:.1f}; median of {args.repeats}\n")
    print("| threads | pipeline alone (images/s) | extractor alone | both together | both / slower stage | "
          "CPU bound when both share every core |")
    print("|---|---|---|---|---|---|")
    budgets = [("whole machine each (decoding threads " + str(min(4, cores)) + f", XNNPACK {cores})",
                {"threads": cores, "workers": None, "split_cores": False})]
    if cores >= 2:
        budgets.append(("one core each (1 decoding thread, 1 XNNPACK thread, pinned apart)",
                        {"threads": 1, "workers": 1, "split_cores": True}))
    for name, budget in budgets:
        runs = [one_budget(paths, content, **budget) for _ in range(args.repeats)]
        figure = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        slower = min(figure["pipeline"], figure["extractor"])
        bound = 1 / (1 / figure["pipeline"] + 1 / figure["extractor"])
        print(f"| {name} | {figure['pipeline']:.0f} | {figure['extractor']:.0f} | {figure['both']:.0f} | "
              f"{figure['both'] / slower:.2f} | {bound:.0f} ({bound / slower:.2f} of the slower) |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
