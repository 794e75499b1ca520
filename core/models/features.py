"""The embedding cache: pooled backbone features of every image, computed once per
(dataset, backbone, input size, resize mode, weights) and reused by every later run.

Arrays are written in chunks into ``.npy`` files in a staging folder that is renamed into place
when complete, so a stopped or crashed extraction never leaves a half cache.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class WorkerShare:
    """This worker's part of an embedding pass split across ``count`` workers: every ``count``-th image from
    ``index`` on, then ``gather`` (a collective every worker calls with the same shape: a float32 array summed
    over the workers, the same result on each) puts every worker's rows together."""

    index: int
    count: int
    gather: Callable[[np.ndarray], np.ndarray]


def cached_features(workspace: Workspace, key: str) -> dict | None:
    """``{split: memory-mapped array}`` for a complete cache entry, else None."""
    folder = workspace.features_dir / key
    meta = read_json(folder / "meta.json")
    if not meta or not meta.get("complete"):
        return None
    return {split: np.load(folder / f"{split}.npy", mmap_mode="r") for split in meta["splits"]}


def feature_meta(workspace: Workspace, key: str) -> dict:
    """The facts stored with a cache entry: backbone, weights, which runtime computed it, conversion seconds."""
    return read_json(workspace.features_dir / key / "meta.json", default={})


def extract_features(workspace: Workspace, key: str, extractor, dataset, *, image_size: int, resize: str,
                     batch_size: int = 32, reporter=None, meta: dict | None = None,
                     share: WorkerShare | None = None) -> dict:
    """Compute (or reuse) the embeddings of every split of ``dataset`` with ``extractor``.

    A Keras extractor runs on the cheaper runtime (``core.models.extractors``: LiteRT converted once per machine,
    or Keras) when ``meta`` names its ``backbone`` and ``weights_fingerprint``; which runtime ran, the
    conversion seconds and the images/s of the pass are stored in the entry's ``meta.json``.

    Args:
        workspace: Where the cache lives.
        key: From ``feature_key``.
        extractor: Keras model or ``core.models.extractors.FastExtractor``, raw pixels in, pooled embeddings out;
            or a ``core.models.extractors.LaterModel`` for a Keras model still being built (waited for only if
            Keras runs the pass).
        dataset: A ``core.data.datasets.Dataset``.
        image_size: Input side.
        resize: Resize mode.
        batch_size: Images per forward pass.
        reporter: Optional RunReporter for progress and Stop.
        meta: Extra facts stored in ``meta.json`` (backbone, weights, weights_fingerprint).
        share: Across workers, this worker's part of the pass (``WorkerShare``); every worker embeds its share
            and all of them get every embedding. Ignored when some worker has the cache (it is read, not made).

    Returns:
        ``{split: array (N, D)}`` with rows in manifest order.
    """
    found = cached_features(workspace, key)
    anyone_cached = _anyone_cached(reporter, found is not None)
    if found is not None:
        return found
    stop_check = _stop_check(reporter, anyone_cached=anyone_cached)
    share = None if anyone_cached or share is None or share.count < 2 else share
    meta = dict(meta or {})
    total = sum(len(dataset.split_entries(split)) for split in dataset.splits)
    embedded = total if share is None else len(range(share.index, total, share.count))
    extractor = _fast(extractor, meta, image_size, embedded)
    staging = workspace.staging_dir(f"features-{key}-")
    try:
        started = time.perf_counter()
        dim = _run_pass(staging, extractor, dataset, image_size, resize, batch_size, reporter, total, stop_check,
                        share=share)
        seconds = time.perf_counter() - started
        facts = _runtime_facts(extractor, total, seconds)
        if share is not None:
            facts.update(workers=share.count, worker_images=embedded)
        atomic_write_json(staging / "meta.json", {**meta, **facts, "key": key, "splits": list(dataset.splits),
                                                   "dataset_id": dataset.id, "dim": dim, "complete": True})
        # The machine's own speed: its share of the images in the seconds it took (the gather included).
        _record_speed(workspace, meta, image_size, {**facts, "images_per_s": round(embedded / max(
            seconds - facts["conversion_s"], 1e-6), 2)}, f"{embedded} of the {total} images of {dataset.name}")
        target = workspace.features_dir / key
        try:
            os.rename(staging, target)
        except OSError:  # another process finished the same cache first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return cached_features(workspace, key)


def _fast(extractor, meta: dict, image_size: int, total: int):
    from core.models.extractors import fast_feature_extractor, resolved

    if hasattr(extractor, "describe"):
        return extractor
    if not meta.get("backbone") or "weights_fingerprint" not in meta:
        return resolved(extractor)

    return fast_feature_extractor(extractor, backbone=meta["backbone"], image_size=image_size,
                                  weights_fingerprint=meta["weights_fingerprint"], num_images=total)


def _anyone_cached(reporter, cached: bool) -> bool:
    """Whether some worker has the cache (across workers a collective every worker asks once); else ``cached``."""
    if reporter is None or not getattr(reporter, "shares_stop", False):
        return cached
    return reporter.any_worker(cached)


def _stop_check(reporter, *, anyone_cached: bool):
    """How the pass asks for Stop before each batch: the flag file in one process; across workers a Stop agreed by
    all (a collective, so every worker must ask at the same batches: only when none has the cache, all embed
    batches in step). When some worker has it, the others embed without asking and Stop waits for the next point
    all workers pass together."""
    if reporter is None:
        return None
    if not getattr(reporter, "shares_stop", False):
        return reporter.stop_requested
    return None if anyone_cached else reporter.sync_stop


def _run_pass(staging, extractor, dataset, image_size, resize, batch_size, reporter, total, stop_check=None,
              share: WorkerShare | None = None) -> int:
    """Every split through ``extractor`` into ``staging/<split>.npy`` (rows in manifest order); decoding threads
    overlap inference. One stream runs over every split, so a batch may span a split boundary.

    Across workers (``share``) this worker embeds its share of the images, then every worker's rows are gathered;
    every worker asks for Stop at the same number of batches (its share may be a batch shorter than another's)
    and gathers the same chunks.
    """
    from core.models.pipeline import image_batches

    dim = int(extractor.output_shape[-1])
    splits = [(split, dataset.paths(split)) for split in dataset.splits]
    paths = [path for _, split_paths in splits for path in split_paths]
    arrays = [np.lib.format.open_memmap(staging / f"{split}.npy", mode="w+", dtype=np.float32,
                                        shape=(len(split_paths), dim)) for split, split_paths in splits]
    rows = [(index, row) for index, (_, split_paths) in enumerate(splits) for row in range(len(split_paths))]
    first, count = (share.index, share.count) if share is not None else (0, 1)
    mine = range(first, len(paths), count)
    stream = image_batches([paths[i] for i in mine], image_size=image_size, batch_size=batch_size, resize=resize)
    done = 0
    try:
        for _ in range(math.ceil(math.ceil(len(paths) / count) / batch_size)):
            if stop_check is not None and stop_check():
                reporter.mark_stopped()
                raise StopRequested()
            images = next(stream, None)
            if images is None:  # a shorter share: this worker only answers the Stop questions of the others' batches
                continue
            batch = _predict(extractor, images, batch_size, after_full_batch=done > 0)
            for offset, flat in enumerate(mine[done:done + len(batch)]):
                index, row = rows[flat]
                arrays[index][row] = batch[offset]
            done += len(batch)
            if reporter is not None:
                reporter.batch(min(total, done * count), total)
    finally:
        stream.close()  # its decoding threads end now, not when the generator is collected
    if share is not None:
        _gather(arrays, share.gather)
    for array in arrays:
        array.flush()
    del arrays
    return dim


def _predict(extractor, images, batch_size: int, *, after_full_batch: bool) -> np.ndarray:
    """``extractor``'s embeddings of ``images``. On Keras a short last batch is padded to the full size: a batch
    of a new size makes Keras trace its predict function again (measured 0.5 s for MobileNetV2 at 224 px, more
    than embedding the 31 images a padding can add); LiteRT resizes its input at no cost."""
    count = len(images)
    if after_full_batch and count < batch_size and getattr(extractor, "runtime", "keras") == "keras":
        padded = np.zeros((batch_size, *np.shape(images)[1:]), np.float32)
        padded[:count] = images
        return np.asarray(extractor.predict_on_batch(padded))[:count]
    return np.asarray(extractor.predict_on_batch(images))


GATHER_FLOATS = 1 << 20  # floats per all-reduce of a gather (4 MB): the same length each time, traced once


def _gather(arrays: list[np.ndarray], gather) -> None:
    """Every worker's rows (each row is zero on all workers but one) summed in place, chunk by chunk over the rows
    of every split in order: the same chunks, so the same all-reduces, on every worker."""
    dim = int(arrays[0].shape[1]) if arrays else 0
    chunk = max(1, GATHER_FLOATS // max(dim, 1))
    bounds = np.cumsum([0, *(len(array) for array in arrays)])
    for start in range(0, int(bounds[-1]), chunk):
        stop = min(start + chunk, int(bounds[-1]))
        # (array, its first and last row in this chunk, where they sit in the chunk)
        pieces = [(array, max(start, low) - low, min(stop, high) - low, max(start, low) - start)
                  for array, low, high in zip(arrays, bounds[:-1], bounds[1:], strict=True) if low < stop and high > start]
        part = np.zeros((chunk, dim), np.float32)
        for array, first, last, at in pieces:
            part[at:at + last - first] = array[first:last]
        summed = np.asarray(gather(part.ravel()), np.float32).reshape(chunk, dim)
        for array, first, last, at in pieces:
            array[first:last] = summed[at:at + last - first]


def _runtime_facts(extractor, total: int, seconds: float) -> dict:
    described = extractor.describe() if hasattr(extractor, "describe") else {"runtime": "keras", "conversion_s": 0.0}
    conversion = float(described.get("conversion_s") or 0.0)
    pass_seconds = max(seconds - conversion, 1e-6)
    return {"runtime": described["runtime"], "runtime_reason": described.get("reason"),
            "conversion_s": round(conversion, 3), "threads": described.get("threads"),
            "extract_s": round(seconds, 3), "images_per_s": round(total / pass_seconds, 2)}


def _record_speed(workspace: Workspace, meta: dict, image_size: int, facts: dict, measured_on: str) -> None:
    backbone = meta.get("backbone")
    if not backbone:
        return
    from core.models.litert import ConvertedStore
    from core.models.speed import record_speed

    record_speed(workspace, backbone, image_size, facts["images_per_s"], runtime=facts["runtime"],
                 measured_on=measured_on)
    try:
        ConvertedStore().record_speed(backbone, image_size, **{facts["runtime"]: facts["images_per_s"]})
    except OSError:  # the machine-wide cache folder is not writable: the estimate stays a default
        pass
