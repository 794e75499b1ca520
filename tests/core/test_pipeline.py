"""The tf.data pipeline: shapes, labels, the shared resize and lazy reading."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data.images import load_rgb_image, prepare_image
from core.errors import ConfigError
from core.models.pipeline import image_batches, make_image_dataset


@pytest.fixture
def image_paths(tmp_path):
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (30 + i, 20), (i * 40, 10, 200)).save(path)
        paths.append(path)
    return paths


def test_batches_images_and_labels_with_raw_pixel_values(image_paths):
    dataset = make_image_dataset(image_paths, [0, 1, 0, 1, 1], image_size=16, batch_size=2)
    batches = list(dataset.as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(2, 16, 16, 3), (2, 16, 16, 3), (1, 16, 16, 3)]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int32
    assert np.concatenate([b[1] for b in batches]).tolist() == [0, 1, 0, 1, 1]
    assert batches[2][0][0, 0, 0].tolist() == [160.0, 10.0, 200.0]


def test_pixels_equal_prepare_image_for_every_resize_mode(image_paths):
    for resize in ("squash", "crop", "pad"):
        images = next(iter(make_image_dataset(image_paths[:1], image_size=12, resize=resize)))
        expected = prepare_image(load_rgb_image(image_paths[0]), 12, resize)
        np.testing.assert_array_equal(images.numpy()[0], expected)


@pytest.mark.parametrize("resize", ["squash", "crop", "pad"])
def test_threaded_batches_hold_the_same_pixels_in_the_same_order_as_the_tf_data_pipeline(image_paths, resize):
    threaded = list(image_batches(image_paths, image_size=12, batch_size=2, resize=resize, workers=3, ahead=1))
    graph = [batch.numpy() for batch in make_image_dataset(image_paths, image_size=12, batch_size=2, resize=resize)]
    assert [batch.shape for batch in threaded] == [(2, 12, 12, 3), (2, 12, 12, 3), (1, 12, 12, 3)]
    assert threaded[0].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate(threaded), np.concatenate(graph))


def test_threaded_batches_name_the_unreadable_file(image_paths):
    image_paths[3].write_bytes(b"not an image")
    with pytest.raises(Exception, match="3.png"):
        list(image_batches(image_paths, image_size=8, batch_size=2))


def test_shuffle_is_seeded_and_keeps_pairs(image_paths):
    labels = [0, 1, 2, 3, 4]

    def order(seed):
        dataset = make_image_dataset(image_paths, labels, image_size=8, batch_size=5, shuffle=True, seed=seed)
        images, out = next(iter(dataset))
        red = images.numpy()[:, 0, 0, 0]
        assert (red / 40).round().astype(int).tolist() == out.numpy().tolist()
        return out.numpy().tolist()

    assert order(1) == order(1) and sorted(order(1)) == labels


def test_augment_layer_is_applied_per_batch(image_paths):
    import keras

    flip = keras.layers.RandomFlip("horizontal", seed=0)
    dataset = make_image_dataset(image_paths, [0] * 5, image_size=8, batch_size=5, augment=flip)
    images, _ = next(iter(dataset))
    assert images.shape == (5, 8, 8, 3)


def test_mismatched_labels_and_empty_paths_are_config_errors(image_paths):
    with pytest.raises(ConfigError, match="5 paths but 2 labels"):
        make_image_dataset(image_paths, [0, 1], image_size=8)
    with pytest.raises(ConfigError, match="no image paths"):
        make_image_dataset([], image_size=8)
