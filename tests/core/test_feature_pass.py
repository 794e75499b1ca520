"""The embedding pass's batches: a short last batch is padded on Keras (a new batch size retraces), not on LiteRT."""

from __future__ import annotations

import numpy as np
import pytest

from core.models.features import extract_features
from tests.factories import make_tiny_dataset


class Recording:
    """A stand-in extractor (channel means) that records the batch sizes it was given."""

    output_shape = (None, 3)

    def __init__(self, runtime: str | None):
        if runtime is not None:
            self.runtime = runtime
        self.sizes = []

    def predict_on_batch(self, images):
        self.sizes.append(len(images))
        return np.asarray(images, np.float32).mean(axis=(1, 2))


@pytest.mark.parametrize(("runtime", "sizes"), [(None, [4] * 8), ("keras", [4] * 8), ("litert", [4] * 7 + [2])])
def test_a_short_last_batch_is_padded_only_on_keras_and_the_rows_stay_right(workspace, tmp_path, runtime, sizes):
    dataset = make_tiny_dataset(workspace, tmp_path)  # 30 images: 7 batches of 4, then 2
    extractor = Recording(runtime)
    features = extract_features(workspace, "key", extractor, dataset, image_size=32, resize="squash",
                                batch_size=4)
    assert extractor.sizes == sizes
    expected = Recording("litert")
    for split in dataset.splits:
        np.testing.assert_allclose(features[split], extract_features(
            workspace, f"check-{split}", expected, dataset, image_size=32, resize="squash", batch_size=64)[split],
            rtol=1e-6)


def test_a_pass_of_one_short_batch_is_not_padded(workspace, tmp_path):
    dataset = make_tiny_dataset(workspace, tmp_path)
    extractor = Recording("keras")
    extract_features(workspace, "key", extractor, dataset, image_size=32, resize="squash", batch_size=64)
    assert extractor.sizes == [30]
