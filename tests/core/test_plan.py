"""One plan per run: worked out once from the settings and the dataset, before anything is queued."""

from __future__ import annotations

import pytest

from core import runs
from core.config import TrainConfig
from core.errors import ConfigError
from core.jobs import JobManager
from core.models.backbones import get_backbone
from core.models.features import feature_key
from core.models.plan import plan_run
from core.models.speed import record_speed
from tests.factories import make_tiny_dataset

SMALL = {"backbone": "mobilenet_v3_small", "image_size": 96, "weights": "none"}


@pytest.fixture
def tiny(workspace, tmp_path):
    return make_tiny_dataset(workspace, tmp_path)


def test_a_plan_holds_the_facts_of_the_run(workspace, tiny):
    plan = plan_run(TrainConfig(dataset_id=tiny.id, **SMALL, seed=3), workspace)
    assert plan.spec is get_backbone("mobilenet_v3_small") and plan.image_size == 96
    assert plan.weights.fingerprint == "none"
    assert plan.feature_key == feature_key(tiny.id, "mobilenet_v3_small", 96, "crop", "none", seed=3)
    assert plan.uses_features and not plan.uses_keras_steps and plan.fine_tune_layers == 0
    assert plan.describe()["fine_tune_layers"] == "none"
    default = plan_run(TrainConfig(dataset_id=tiny.id, backbone="mobilenet_v3_small", weights="none"), workspace)
    assert default.image_size == get_backbone("mobilenet_v3_small").default_size


def test_fine_tuning_layers_come_from_the_plan(workspace, tiny):
    whole = plan_run(TrainConfig(dataset_id=tiny.id, **SMALL, strategy="fine-tune"), workspace)
    top = plan_run(TrainConfig(dataset_id=tiny.id, **SMALL, strategy="fine-tune", fine_tune_layers=8), workspace)
    assert whole.fine_tune_layers is None and whole.describe()["fine_tune_layers"] == "whole backbone"
    assert top.fine_tune_layers == 8 and top.uses_keras_steps


def test_a_size_the_backbone_does_not_allow_fails_before_anything_is_queued(workspace, tiny):
    manager = JobManager(workspace, max_jobs=1)
    manager.dispatch = lambda: None  # queue only: no worker
    with pytest.raises(ConfigError, match="image_size=100 is not allowed for MobileNetV3 Small; use one of 96"):
        manager.submit(TrainConfig(dataset_id=tiny.id, backbone="mobilenet_v3_small", image_size=100,
                                   weights="none"))
    assert runs.list_runs(workspace) == []


def test_a_queued_run_records_its_plan(workspace, tiny):
    manager = JobManager(workspace, max_jobs=1)
    manager.dispatch = lambda: None  # queue only: no worker
    run_id = manager.submit(TrainConfig(dataset_id=tiny.id, **SMALL))
    plan = runs.load_run(workspace, run_id)["plan"]
    assert plan["backbone"] == "mobilenet_v3_small" and plan["image_size"] == 96
    assert plan["feature_key"] == feature_key(tiny.id, "mobilenet_v3_small", 96, "crop", "none")


def test_a_preview_does_not_download_missing_imagenet_weights(workspace, tiny, monkeypatch):
    import core.models.plan
    import core.models.weights

    monkeypatch.setattr(core.models.weights, "weights_available", lambda spec, size, weights_dir=None: False)
    monkeypatch.setattr(core.models.weights, "resolve_weights", lambda *a, **k: pytest.fail("no download in a preview"))
    plan = core.models.plan.plan_run(TrainConfig(dataset_id=tiny.id, backbone="mobilenet_v3_small"), workspace,
                              resolve=False)
    assert plan.weights is None and plan.feature_key is None
    assert plan.describe()["weights"] == "ImageNet (to be downloaded)"


def test_the_estimate_rests_on_speeds_measured_here(workspace, tiny):
    plan = plan_run(TrainConfig(dataset_id=tiny.id, **SMALL), workspace)
    unknown = plan.estimate(workspace, tiny)
    assert unknown.seconds is None and unknown.missing == "features"
    record_speed(workspace, "mobilenet_v3_small", 96, 100.0, runtime=unknown.extraction.runtime,
                 measured_on="30 images of tiny")
    known = plan.estimate(workspace, tiny)
    assert known.missing is None and known.seconds > 0 and known.measured.images_per_s == 100.0


def test_the_run_trains_from_its_plan(workspace, tiny):
    from core.training.trainer import train_model

    record = train_model(TrainConfig(dataset_id=tiny.id, **SMALL, batch_size=8), workspace)
    assert record["status"] == "done", record.get("error")
    assert record["plan"]["feature_key"] == record["feature_key"]  # the embeddings it used are the plan's
    assert record["plan"]["image_size"] == record["image_size"] == 96
