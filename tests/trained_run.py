"""One tiny trained run shared by the evaluation, prediction and export tests.

Training it once per test session (it is only read afterwards) keeps those tests fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.factories import make_class_folders, make_tiny_dataset

IMAGE_SIZE = 32


@dataclass(frozen=True)
class TinyRun:
    workspace: object
    run_id: str
    dataset: object
    source: Path  # the generated class folders (red/, green/, blue/)


_CACHE: dict[str, TinyRun] = {}


def shared_tiny_run(tmp_path_factory) -> TinyRun:
    """A finished run (model.keras, labels.json, run.json) on a 3-class generated dataset."""
    if "run" not in _CACHE:
        _CACHE["run"] = make_tiny_run(tmp_path_factory.mktemp("tiny-run"))
    return _CACHE["run"]


def make_tiny_run(root: Path) -> TinyRun:
    """Ingest generated images and train a small raw-pixels-in classifier into a run folder."""
    import keras

    from core import runs
    from core.config import TrainConfig
    from core.workspace import Workspace

    workspace = Workspace.open(root / "workspace")
    dataset = make_tiny_dataset(workspace, root, per_class=10, size=40)
    config = TrainConfig(dataset_id=dataset.id, backbone="mobilenet_v2", image_size=IMAGE_SIZE,
                         weights="none", epochs=1)
    run_id = runs.create_run(workspace, config, classes=dataset.classes, status="running")
    model = _small_classifier(len(dataset.classes))
    x, y = _arrays(dataset, "train")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    model.save(runs.model_path(workspace, run_id))
    runs.update_run(workspace, run_id, status="done", epochs_run=30, best_val_accuracy=None,
                    max_side=dataset.summary.get("max_side"))  # trained here, on the stored copies
    return TinyRun(workspace, run_id, dataset, root / "tiny-source")


def copy_run_to_dataset(run: TinyRun, dataset) -> str:
    """A new finished run on ``dataset`` (same classes) holding a copy of ``run``'s model."""
    import shutil

    from core import runs
    from core.config import TrainConfig

    config = TrainConfig(dataset_id=dataset.id, backbone="mobilenet_v2", image_size=IMAGE_SIZE, weights="none")
    run_id = runs.create_run(run.workspace, config, classes=dataset.classes, status="done")
    shutil.copy(runs.model_path(run.workspace, run.run_id), runs.model_path(run.workspace, run_id))
    return run_id


def ingest_with_test_split(workspace, root: Path):
    """A dataset from train/ and test/ folders of generated images (so it has a test split)."""
    from core.data.datasets import ingest

    make_class_folders(root / "split-source" / "train", per_class=8, size=40, seed=3)
    make_class_folders(root / "split-source" / "test", per_class=3, size=40, seed=4)
    return ingest(root / "split-source", workspace, val_fraction=0.25, seed=0)


def _small_classifier(num_classes: int):
    """Input raw 0..255 -> Rescaling -> Conv2D -> pooling -> softmax: the contract's model shape."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="float32")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def _arrays(dataset, split: str):
    from core.data.images import load_rgb_image, prepare_image

    x = np.stack([prepare_image(load_rgb_image(p), IMAGE_SIZE) for p in dataset.paths(split)])
    return x, dataset.label_indices(split)


