"""The embedding cache: pooled backbone features of every image, computed once per
(dataset, backbone, input size, resize mode, weights) and reused by every later run.

Arrays are written in chunks into ``.npy`` files in a staging folder that is renamed into place
when complete, so a stopped or crashed extraction never leaves a half cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from core.progress import StopRequested
from core.workspace import Workspace, atomic_write_json, read_json


def feature_key(dataset_id: str, backbone: str, image_size: int, resize: str, weights_fingerprint: str, *,
                seed: int = 0) -> str:
    """The cache key of a dataset's embeddings: everything the features depend on.

    Random-init weights depend on the seed (the same seed gives the same backbone), so the seed is part of the key
    then; pretrained weights are fixed by their fingerprint and the seed does not matter.
    """
    text = f"{dataset_id}|{backbone}|{image_size}|{resize}|{weights_fingerprint}"
    if weights_fingerprint == "none":
        text += f"|seed={int(seed)}"
    return f"{backbone}-{image_size}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def cached_features(workspace: Workspace, key: str) -> dict | None:
    """``{split: memory-mapped array}`` for a complete cache entry, else None."""
    folder = workspace.features_dir / key
    meta = read_json(folder / "meta.json")
    if not meta or not meta.get("complete"):
        return None
    return {split: np.load(folder / f"{split}.npy", mmap_mode="r") for split in meta["splits"]}


def extract_features(workspace: Workspace, key: str, extractor, dataset, *, image_size: int, resize: str,
                     batch_size: int = 32, reporter=None, meta: dict | None = None) -> dict:
    """Compute (or reuse) the embeddings of every split of ``dataset`` with ``extractor``.

    Args:
        workspace: Where the cache lives.
        key: From ``feature_key``.
        extractor: Keras model, raw pixels in, pooled embeddings out.
        dataset: A ``core.datasets.Dataset``.
        image_size: Input side.
        resize: Resize mode.
        batch_size: Images per forward pass.
        reporter: Optional RunReporter for progress and Stop.
        meta: Extra facts stored in ``meta.json`` (backbone, weights).

    Returns:
        ``{split: array (N, D)}`` with rows in manifest order.
    """
    found = cached_features(workspace, key)
    if found is not None:
        return found
    from core.pipeline import make_image_dataset

    staging = workspace.staging_dir(f"features-{key}-")
    try:
        total = sum(len(dataset.split_entries(split)) for split in dataset.splits)
        done = 0
        dim = int(extractor.output_shape[-1])
        for split in dataset.splits:
            paths = dataset.paths(split)
            array = np.lib.format.open_memmap(staging / f"{split}.npy", mode="w+", dtype=np.float32,
                                              shape=(len(paths), dim))
            start = 0
            for images in make_image_dataset(paths, image_size=image_size, batch_size=batch_size, resize=resize):
                if reporter is not None and reporter.stop_requested():
                    raise StopRequested()
                batch = np.asarray(extractor.predict_on_batch(images))
                array[start:start + len(batch)] = batch
                start += len(batch)
                done += len(batch)
                if reporter is not None:
                    reporter.batch(done, total)
            array.flush()
            del array
        atomic_write_json(staging / "meta.json", {**(meta or {}), "key": key, "splits": list(dataset.splits),
                                                   "dataset_id": dataset.id, "dim": dim, "complete": True})
        target = workspace.features_dir / key
        try:
            os.rename(staging, target)
        except OSError:  # another process finished the same cache first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return cached_features(workspace, key)


def delete_features_for_dataset(workspace: Workspace, dataset_id: str) -> int:
    """Remove cache entries built from ``dataset_id``; returns how many."""
    removed = 0
    for folder in Path(workspace.features_dir).iterdir():
        meta = read_json(folder / "meta.json", default={})
        if meta.get("dataset_id") == dataset_id:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
