"""Overheads of our plumbing: a fine-tune epoch of ours against a bare ``model.fit`` of the same model on the same
``tf.data`` pipeline, and one warm prediction with MobileNetV2. Prints figures; asserts nothing.

Usage: ``.venv/bin/python bench/bench_overheads.py``
"""

from __future__ import annotations

import statistics
import time

from _common import setup_environment, shared_zip

scratch = setup_environment()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from core.config import TrainConfig  # noqa: E402
from core.data.datasets import ingest  # noqa: E402
from core.models.backbones import get_backbone  # noqa: E402
from core.models.classifier import build_classifier, set_backbone_trainable  # noqa: E402
from core.models.pipeline import build_augmentation, make_image_dataset  # noqa: E402
from core.models.prediction import Predictor  # noqa: E402
from core.models.weights import resolve_weights  # noqa: E402
from core.runs import load_history  # noqa: E402
from core.training.trainer import train_model  # noqa: E402
from core.workspace import Workspace  # noqa: E402

EPOCHS = 3
SIZE = 224


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def bare_fine_tune_epochs(dataset, layers: int) -> list[float]:
    spec = get_backbone("mobilenet_v2")
    keras.utils.set_random_seed(0)
    model = build_classifier(spec, image_size=SIZE, num_classes=len(dataset.classes),
                             weights=resolve_weights(spec, SIZE, "imagenet"))
    set_backbone_trainable(model, "top", layers)
    model.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False)
    train = make_image_dataset(dataset.paths("train"), dataset.label_indices("train"), image_size=SIZE,
                               shuffle=True, augment=build_augmentation(0))
    val = make_image_dataset(dataset.paths("val"), dataset.label_indices("val"), image_size=SIZE)
    timer = _EpochTimer()
    model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0, callbacks=[timer])
    return timer.times


def main() -> None:
    workspace = Workspace.open(scratch / "workspace")
    dataset = ingest(shared_zip("hymenoptera.zip"), workspace)
    config = TrainConfig(dataset_id=dataset.id, strategy="fine-tune", epochs=2, fine_tune_epochs=EPOCHS,
                         early_stopping_patience=0, image_size=SIZE)
    record = train_model(config, workspace)
    ours = [h["epoch_time"] for h in load_history(workspace, record["run_id"]) if h["phase"] == 2]
    layers = get_backbone("mobilenet_v2").default_fine_tune_layers()
    bare = bare_fine_tune_epochs(dataset, layers)
    # The first epoch of each includes graph tracing; compare the steady ones.
    ours_steady, bare_steady = statistics.mean(ours[1:]), statistics.mean(bare[1:])
    print(f"fine-tune epoch, hymenoptera, MobileNetV2 {SIZE} px, top {layers} layers:")
    print(f"  ours: {', '.join(f'{t:.2f}' for t in ours)} s; bare model.fit: {', '.join(f'{t:.2f}' for t in bare)} s")
    print(f"  steady-state ratio ours / bare: {ours_steady / bare_steady:.3f} (target <= 1.2)")

    predictor = Predictor.from_run(workspace, record["run_id"])
    image = dataset.paths("val")[0]
    predictor.predict_images([image])  # warm-up
    times = []
    for _ in range(20):
        started = time.perf_counter()
        predictor.predict_images([image])
        times.append((time.perf_counter() - started) * 1000)
    print(f"warm single prediction (load + resize + model), MobileNetV2: median {np.median(times):.1f} ms, "
          f"max {max(times):.1f} ms (target <= 100 ms)")


if __name__ == "__main__":
    main()
