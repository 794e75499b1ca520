"""Hymenoptera with MobileNetV2 + ImageNet weights: our feature extraction and fine-tune against the naive
recipe of the seed articles (frozen base inside the model, ``model.fit`` over the images every epoch).

Prints a Markdown table; asserts nothing. Usage: ``.venv/bin/python bench/bench_training.py [--epochs 10]``
"""

from __future__ import annotations

import argparse
import time

from _common import setup_environment, shared_zip

scratch = setup_environment()

import keras  # noqa: E402

from core.backbones import get_backbone  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.datasets import ingest  # noqa: E402
from core.models import build_classifier  # noqa: E402
from core.pipeline import make_image_dataset  # noqa: E402
from core.training import train_model  # noqa: E402
from core.weights import resolve_weights  # noqa: E402
from core.workspace import Workspace  # noqa: E402


def naive_recipe(dataset, epochs: int) -> tuple[float, float]:
    """The seed articles' recipe: images through the frozen base on every epoch."""
    spec = get_backbone("mobilenet_v2")
    keras.utils.set_random_seed(0)
    model = build_classifier(spec, image_size=224, num_classes=len(dataset.classes),
                             weights=resolve_weights(spec, 224, "imagenet"))
    model.get_layer("backbone").trainable = False
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train = make_image_dataset(dataset.paths("train"), dataset.label_indices("train"), image_size=224,
                               shuffle=True)
    val = make_image_dataset(dataset.paths("val"), dataset.label_indices("val"), image_size=224)
    started = time.perf_counter()
    history = model.fit(train, validation_data=val, epochs=epochs, verbose=0)
    return time.perf_counter() - started, max(history.history["val_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    workspace = Workspace.open(scratch / "workspace")
    started = time.perf_counter()
    dataset = ingest(shared_zip("hymenoptera.zip"), workspace)
    print(f"ingest: {time.perf_counter() - started:.1f} s, {len(dataset.entries)} images")
    # Weights are read once before timing ("after the weights are cached").
    resolve_weights(get_backbone("mobilenet_v2"), 224, "imagenet")
    rows = []
    for strategy in ("feature-extraction", "fine-tune"):
        config = TrainConfig(dataset_id=dataset.id, strategy=strategy, epochs=args.epochs, fine_tune_epochs=3,
                             early_stopping_patience=0, image_size=224)
        record = train_model(config, workspace)
        rows.append((f"ours: {strategy}", record["timings"]["total_s"], record["best_val_accuracy"],
                     record["timings"]))
    seconds, accuracy = naive_recipe(dataset, args.epochs)
    rows.append(("naive recipe (fit over images)", seconds, accuracy, {}))
    naive_seconds = seconds
    print(f"\nhymenoptera, MobileNetV2 224 px ImageNet, {args.epochs} epochs (fine-tune: +3), 2 CPU cores\n")
    print("| recipe | wall time (s) | val accuracy | speed-up vs naive | detail |")
    print("|---|---|---|---|---|")
    for name, seconds, accuracy, timings in rows:
        detail = ", ".join(f"{key} {value:.1f}" if isinstance(value, (int, float)) else f"{key} {value}"
                           for key, value in timings.items())
        print(f"| {name} | {seconds:.1f} | {accuracy:.3f} | {naive_seconds / seconds:.1f}x | {detail} |")


if __name__ == "__main__":
    main()
