"""Real learning: MobileNetV2 with the real ImageNet weights on the real ants-and-bees photographs."""

from __future__ import annotations

import pytest

from core.config import TrainConfig
from core.data.datasets import ingest
from core.training.trainer import train_model

pytestmark = pytest.mark.real


def test_feature_extraction_on_hymenoptera_reaches_093_on_images_that_chose_nothing(workspace, shared_data,
                                                                                     keras_home):
    dataset = ingest(shared_data("hymenoptera.zip"), workspace)
    config = TrainConfig(dataset_id=dataset.id, backbone="mobilenet_v2", strategy="feature-extraction",
                         image_size=224)
    record = train_model(config, workspace)
    assert record["status"] == "done", record.get("error")
    assert record["weights"].lower().startswith("imagenet")
    assert record["headline"]["split"] == "val" and record["roles"]["selection"] == "cross-validation on train"
    assert record["headline"]["accuracy"] >= 0.93
