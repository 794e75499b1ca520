"""Keras against LiteRT (XNNPACK): every backbone's extractor, and hymenoptera against the seed recipe.

Part 1, per registry backbone at its default size (ImageNet weights where they are here, random
otherwise: speed does not depend on them), each in its own process for an honest peak memory: Keras
images/s, conversion seconds, LiteRT images/s, the largest embedding difference, peak memory.

Part 2, hymenoptera (MobileNetV2 224 px, ImageNet): whole ``python -m core train`` processes on every
shared dataset on a cold machine (nothing converted) against the same command on Keras only; then,
once an earlier run on another dataset has left the converted model, our feature extraction (embeddings
+ head) against the seed recipe (frozen MobileNetV2 inside the model, GAP, Dense 256, Adam 1e-4,
``model.fit`` over the images for 10 epochs), in the same bench run; the input pipeline alone, the
extractor alone and both together; warm prediction latency and throughput on both runtimes.

Prints Markdown tables; asserts nothing. Usage: ``.venv/bin/python bench/bench_speed.py [--part 1|2]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from _common import PROJECT_ROOT, setup_environment, shared_zip

DATASETS = ("hymenoptera.zip", "brain_tumor_mri.zip", "sign_language_digits.zip")


def _child(args: list[str], env: dict | None = None, timeout: float = 1800) -> tuple[float, str]:
    """Run ``args`` in a new process; (wall seconds, stdout)."""
    started = time.perf_counter()
    done = subprocess.run(args, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stdout


def _time_batches(run, batches, repeats: int = 1) -> float:
    run(batches[0])  # warm-up: tracing or tensor allocation is not speed
    started = time.perf_counter()
    count = 0
    for _ in range(repeats):
        for batch in batches:
            count += len(run(batch))
    return count / (time.perf_counter() - started)


def one_backbone(name: str, batch_size: int, batches: int) -> dict:
    """Part 1 for one backbone, in this (fresh) process."""
    import numpy as np

    from core.models.backbones import get_backbone
    from core.models.classifier import build_classifier, feature_extractor
    from core.models.litert import LiteRTModel, convert_model
    from core.models.weights import resolve_weights, weights_available

    spec = get_backbone(name)
    size = spec.default_size
    weights = resolve_weights(spec, size, "imagenet" if weights_available(spec, size) else "none")
    extractor = feature_extractor(build_classifier(spec, image_size=size, num_classes=2, weights=weights))
    rng = np.random.default_rng(0)
    data = [rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32") for _ in range(batches)]
    keras_speed = _time_batches(lambda b: np.asarray(extractor.predict_on_batch(b)), data)
    content, conversion_s = convert_model(extractor)
    fast = LiteRTModel(content)
    litert_speed = _time_batches(fast.predict_on_batch, data)
    expected = np.asarray(extractor.predict_on_batch(data[0]))
    difference = float(np.abs(fast.predict_on_batch(data[0]) - expected).max())
    return {"backbone": name, "size": size, "weights": weights.fingerprint, "keras": keras_speed,
            "litert": litert_speed, "conversion_s": conversion_s, "max_diff": difference,
            "scale": float(np.abs(expected).max()), "threads": fast.threads,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def part_one(args) -> None:
    from core.models.backbones import BACKBONES

    rows = []
    for name in args.backbones or list(BACKBONES):
        _, out = _child([sys.executable, __file__, "--one", name, "--batch-size", str(args.batch_size),
                         "--batches", str(args.batches)])
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nExtractor speed at the default input size, batch {args.batch_size}, {os.cpu_count()} CPU cores\n")
    print("| backbone | px | weights | Keras (img/s) | LiteRT (img/s) | LiteRT / Keras | conversion (s) | "
          "max diff / scale | peak memory (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        weights = "ImageNet" if r["weights"].startswith("imagenet") else "random"
        print(f"| {r['backbone']} | {r['size']} | {weights} | {r['keras']:.1f} | {r['litert']:.1f} | "
              f"{r['litert'] / r['keras']:.2f}x | {r['conversion_s']:.1f} | "
              f"{r['max_diff']:.1e} / {r['scale']:.1e} | {r['peak_mb']:.0f} |")


def seed_recipe(folder: Path, epochs: int) -> dict:
    """The seed articles' recipe, in this (fresh) process: build + fit seconds and validation accuracy."""
    started = time.perf_counter()
    import keras

    imported = time.perf_counter()
    train = keras.utils.image_dataset_from_directory(folder / "train", image_size=(224, 224), batch_size=32,
                                                     seed=0, verbose=False)
    val = keras.utils.image_dataset_from_directory(folder / "val", image_size=(224, 224), batch_size=32,
                                                   shuffle=False, verbose=False)
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(include_top=False, weights="imagenet", input_shape=(224, 224, 3))
    base.trainable = False
    inputs = keras.Input((224, 224, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    x = keras.layers.Dense(256, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train, validation_data=val, epochs=epochs, verbose=0)
    return {"import_s": imported - started, "build_fit_s": time.perf_counter() - imported,
            "val_accuracy": max(history.history["val_accuracy"])}


def _train_cli(zip_path: Path, workspace: Path, env: dict) -> tuple[float, dict]:
    seconds, out = _child([sys.executable, "-m", "core", "train", str(zip_path), "--workspace", str(workspace),
                           "--epochs", "10", "--json"], env)
    return seconds, json.loads(out.strip().splitlines()[-1])


def _wait_for_conversion(cache: Path, timeout: float) -> float:
    started = time.perf_counter()
    while not list(cache.glob("mobilenet_v2-224-*.tflite")) and time.perf_counter() - started < timeout:
        time.sleep(2)
    return time.perf_counter() - started


def cold_runs(scratch: Path, datasets) -> list[tuple]:
    """Whole CLI processes on a machine with nothing converted, against the Keras-only path."""
    rows = []
    for name in datasets:
        cold_cache = scratch / f"cold-{name}"
        keras_s, keras_out = _train_cli(shared_zip(name), scratch / f"ws-keras-{name}",
                                        {"TRANSFER_STUDIO_LITERT": "off",
                                         "TRANSFER_STUDIO_LITERT_CACHE": str(scratch / f"off-{name}")})
        # The background conversion a cold run starts is left out here so that it cannot slow the next runs.
        cold_s, cold_out = _train_cli(shared_zip(name), scratch / f"ws-cold-{name}",
                                      {"TRANSFER_STUDIO_LITERT_CACHE": str(cold_cache),
                                       "TRANSFER_STUDIO_LITERT_BACKGROUND": "0"})
        rows.append((name, keras_s, keras_out, cold_s, cold_out))
        print(json.dumps(rows[-1][1:], default=str), flush=True)
    return rows


def part_two(args, scratch: Path) -> None:
    folder = scratch / "hymenoptera"
    zipfile.ZipFile(shared_zip("hymenoptera.zip")).extractall(folder)
    cache = scratch / "machine-litert"
    env = {"TRANSFER_STUDIO_LITERT_CACHE": str(cache)}
    cold = cold_runs(scratch, args.datasets) if args.datasets else []
    # An earlier run on another dataset leaves the converted model. Its own background conversion runs at the
    # lowest priority and starves on a loaded machine, so this bench has that run convert first instead.
    earlier_s, earlier = _train_cli(shared_zip("brain_tumor_mri.zip"), scratch / "ws-earlier",
                                    {**env, "TRANSFER_STUDIO_LITERT": "always"})
    waited = _wait_for_conversion(cache, 60)
    conversion = json.loads(next(cache.glob("mobilenet_v2-224-*.json")).read_text())["conversion_s"]
    ours_s, ours = _train_cli(shared_zip("hymenoptera.zip"), scratch / "ws-ours", env)
    seed_s, seed_out = _child([sys.executable, __file__, "--seed-recipe", str(folder), "--epochs", str(args.epochs)])
    seed = json.loads(seed_out.strip().splitlines()[-1])
    pipeline = pipeline_figures(scratch / "ws-ours", cache)
    prediction = prediction_figures(scratch / "ws-ours", ours["run_id"], cache)
    report_part_two(cold, earlier, earlier_s, waited, conversion, ours, ours_s, seed, seed_s, pipeline, prediction)


def pipeline_figures(workspace: Path, cache: Path) -> dict:
    """Images/s of the input pipeline alone, the LiteRT extractor alone and of both together."""
    os.environ["TRANSFER_STUDIO_LITERT_CACHE"] = str(cache)
    from core.config import DEFAULT_RESIZE
    from core.data.datasets import list_datasets
    from core.models.litert import ConvertedStore, LiteRTModel
    from core.models.pipeline import image_batches
    from core.workspace import Workspace

    dataset = list_datasets(Workspace.open(workspace))[0]
    paths = [p for split in dataset.splits for p in dataset.paths(split)]
    key = next(cache.glob("mobilenet_v2-224-*.tflite")).stem
    fast = LiteRTModel(ConvertedStore(cache).load(key))
    started = time.perf_counter()
    batches = list(image_batches(paths, image_size=224, batch_size=32, resize=DEFAULT_RESIZE))
    pipeline = len(paths) / (time.perf_counter() - started)
    extractor = _time_batches(fast.predict_on_batch, batches)
    started = time.perf_counter()
    for images in image_batches(paths, image_size=224, batch_size=32, resize=DEFAULT_RESIZE):
        fast.predict_on_batch(images)
    both = len(paths) / (time.perf_counter() - started)
    return {"images": len(paths), "pipeline": pipeline, "extractor": extractor, "both": both}


def prediction_figures(workspace: Path, run_id: str, cache: Path) -> dict:
    """Warm single-image latency (decode, resize, model) and batch throughput, LiteRT and Keras."""
    import statistics

    from core.models.prediction import Predictor
    from core.workspace import Workspace

    ws = Workspace.open(workspace)
    fast = Predictor.from_run(ws, run_id)
    keras_only = Predictor(fast.model, fast.classes, resize=fast.resize, config=fast.config)
    from core.data.datasets import load_dataset

    images = load_dataset(ws, fast.config["dataset_id"]).paths("val")
    figures = {}
    for name, predictor in (("litert", fast), ("keras", keras_only)):
        predictor.predict_images(images[:2])
        latencies = []
        for path in images[:30]:
            started = time.perf_counter()
            predictor.predict_images([path])
            latencies.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        predictor.predict_images(images)
        figures[name] = {"runtime": predictor.runtime_description, "median_ms": statistics.median(latencies),
                         "max_ms": max(latencies), "batch": len(images) / (time.perf_counter() - started)}
    return figures


def report_part_two(cold, earlier, earlier_s, waited, conversion, ours, ours_s, seed, seed_s, pipeline,
                    prediction) -> None:
    t = ours["timings"]
    ours_work = t.get("build_s", 0.0) + t["features_s"] + t["train_s"]
    print(f"\nhymenoptera, MobileNetV2 224 px ImageNet, 10 epochs, {os.cpu_count()} CPU cores\n")
    if cold:
        print("| dataset | Keras only: process (s) | cold LiteRT path: process (s) | ratio | runtime that ran |")
        print("|---|---|---|---|---|")
        for name, keras_s, _, cold_s, cold_out in cold:
            print(f"| {name} | {keras_s:.1f} | {cold_s:.1f} | {keras_s / cold_s:.2f}x | "
                  f"{cold_out['timings']['features_runtime']} (conversion {cold_out['timings']['conversion_s']:.1f} s) |")
    print(f"\nEarlier run on brain_tumor_mri (converting first): {earlier_s:.1f} s, features on "
          f"{earlier['timings']['features_runtime']}, conversion {conversion:.1f} s.\n")
    print("| recipe | build + training (s) | whole process (s) | val accuracy | detail |")
    print("|---|---|---|---|---|")
    print(f"| ours: feature extraction on LiteRT (converted earlier) | {ours_work:.1f} | {ours_s:.1f} | "
          f"{ours['val_accuracy']:.3f} | features {t['features_s']:.1f} s ({t['features_runtime']}), "
          f"head {t['train_s']:.1f} s, ingest {t['ingest_s']:.1f} s |")
    print(f"| seed recipe (frozen base in the model, fit over images) | {seed['build_fit_s']:.1f} | {seed_s:.1f} | "
          f"{seed['val_accuracy']:.3f} | import {seed['import_s']:.1f} s |")
    print(f"| ratio | {seed['build_fit_s'] / ours_work:.1f}x | {seed_s / ours_s:.1f}x | | |")
    p = pipeline
    print(f"\nInput pipeline alone {p['pipeline']:.0f} images/s, LiteRT extractor alone {p['extractor']:.0f} "
          f"images/s, both together {p['both']:.0f} images/s ({p['both'] / min(p['pipeline'], p['extractor']):.2f} "
          f"of the slower), {p['images']} images\n")
    print("| prediction runtime | warm single image, median (ms) | max (ms) | batch (images/s) |")
    print("|---|---|---|---|")
    for figure in prediction.values():
        print(f"| {figure['runtime']} | {figure['median_ms']:.1f} | {figure['max_ms']:.1f} | {figure['batch']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("1", "2", "all"), default="all")
    parser.add_argument("--backbones", nargs="*", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS),
                        help="shared zips for part 2's cold-run comparison (none: skip it)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--seed-recipe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_backbone(args.one, args.batch_size, args.batches)))
        return
    if args.seed_recipe:
        print(json.dumps(seed_recipe(Path(args.seed_recipe), args.epochs)))
        return
    scratch = Path(os.environ["KERAS_HOME"]).parent
    if args.part in ("1", "all"):
        part_one(args)
    if args.part in ("2", "all"):
        part_two(args, scratch)


if __name__ == "__main__":
    setup_environment()
    main()
