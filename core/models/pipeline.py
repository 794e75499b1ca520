"""Input pipelines over the normalized copies of a dataset: ``tf.data`` for training, threads for one pass.

Pixels go through :func:`core.data.images.load_rgb_image` and :func:`core.data.images.prepare_image`
(via ``tf.numpy_function`` in ``make_image_dataset``, directly in ``image_batches``), the same code
prediction and the exported model use, so training and inference see identical inputs. Images are
read lazily, a few batches ahead: the whole dataset is never in memory.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from core.data.images import RESIZE_MODES, load_rgb_image, prepare_image
from core.errors import ConfigError


def _loader(image_size: int, resize: str):
    def load(path) -> np.ndarray:
        name = path.decode("utf-8", "surrogateescape") if isinstance(path, bytes) else str(path)
        return prepare_image(load_rgb_image(name), image_size, resize)

    return load


def make_image_dataset(paths, labels=None, *, image_size: int, batch_size: int = 32, resize: str = "squash",
                       shuffle: bool = False, seed: int = 0, augment=None) -> tf.data.Dataset:
    """A batched, prefetched dataset of images (and labels) read from files.

    Args:
        paths: image file paths (``str`` or ``Path``).
        labels: optional int class indices aligned with ``paths``.
        image_size: side of the square images produced.
        batch_size: images per batch.
        resize: ``"squash"``, ``"crop"`` or ``"pad"`` (see :func:`core.data.images.prepare_image`).
        shuffle: reshuffle the files each epoch (seeded).
        seed: shuffle seed.
        augment: optional Keras layer (or ``Sequential``) applied to each batch with
            ``training=True``; pass it for training data only.

    Returns:
        ``tf.data.Dataset`` yielding ``(images, labels)`` (float32 ``[B, S, S, 3]`` with values
        0..255, int32 ``[B]``), or just images when ``labels`` is None.

    Raises:
        ConfigError: mismatched lengths, no paths, or bad sizes.
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ConfigError("make_image_dataset got no image paths; the split is empty. Check the dataset split.")
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize={resize!r} is not one of {', '.join(RESIZE_MODES)}.")
    if int(image_size) < 1 or int(batch_size) < 1:
        raise ConfigError(f"image_size={image_size!r} and batch_size={batch_size!r} must be positive.")
    if labels is not None and len(labels) != len(paths):
        raise ConfigError(f"Got {len(paths)} paths but {len(labels)} labels; they must match one to one.")
    size = int(image_size)
    load = _loader(size, resize)

    def read(path):
        image = tf.numpy_function(load, [path], tf.float32, stateful=False)
        image.set_shape((size, size, 3))
        return image

    if labels is None:
        dataset = tf.data.Dataset.from_tensor_slices(tf.constant(paths))
    else:
        dataset = tf.data.Dataset.from_tensor_slices(
            (tf.constant(paths), tf.constant(np.asarray(labels, dtype=np.int32))))
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if labels is None:
        dataset = dataset.map(read, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(lambda path, label: (read(path), label), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(int(batch_size))
    if augment is not None:
        if labels is None:
            dataset = dataset.map(lambda images: augment(images, training=True),
                                  num_parallel_calls=tf.data.AUTOTUNE)
        else:
            dataset = dataset.map(lambda images, label: (augment(images, training=True), label),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def image_batches(paths, *, image_size: int, batch_size: int = 32, resize: str = "squash", workers: int | None = None,
                  ahead: int = 2):
    """Batches of images (float32 ``[B, S, S, 3]``, 0..255, in ``paths`` order) as NumPy arrays, decoded by threads.

    For one pass of inference (the embedding cache): the same pixels as :func:`make_image_dataset` without the
    cost of building a ``tf.data`` graph per call (0.5 to 1.3 s here, more than decoding 400 images). Pillow
    releases the GIL while decoding, so ``workers`` threads keep ``ahead`` batches ready while the model runs.
    """
    paths = [os.fspath(p) for p in paths]
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize={resize!r} is not one of {', '.join(RESIZE_MODES)}.")
    if int(image_size) < 1 or int(batch_size) < 1:
        raise ConfigError(f"image_size={image_size!r} and batch_size={batch_size!r} must be positive.")
    load = _loader(int(image_size), resize)
    chunks = iter([paths[start:start + int(batch_size)] for start in range(0, len(paths), int(batch_size))])
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        pending: deque = deque()
        try:
            for chunk in chunks:
                pending.append([pool.submit(load, path) for path in chunk])
                if len(pending) > ahead:
                    yield np.stack([future.result() for future in pending.popleft()])
            while pending:
                yield np.stack([future.result() for future in pending.popleft()])
        finally:
            for futures in pending:
                for future in futures:
                    future.cancel()


def build_augmentation(seed: int = 0):
    """Random flip, rotation, zoom, translation and contrast; used on training images only."""
    import keras

    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.1, seed=seed),
        keras.layers.RandomZoom(0.1, seed=seed),
        keras.layers.RandomTranslation(0.1, 0.1, seed=seed),
        keras.layers.RandomContrast(0.1, seed=seed),
    ], name="augmentation")
