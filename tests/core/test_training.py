"""The training engine on tiny generated data with random weights (mechanics, not accuracy)."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from core import runs
from core.config import TrainConfig
from core.errors import ConfigError
from core.training.trainer import train_model
from tests.factories import make_tiny_dataset


@pytest.fixture
def tiny(workspace, tmp_path):
    return make_tiny_dataset(workspace, tmp_path)


def _config(dataset, **overrides) -> TrainConfig:
    from core.models.backbones import get_backbone

    size = min(get_backbone("mobilenet_v2").allowed_sizes)
    values = {"dataset_id": dataset.id, "backbone": "mobilenet_v2", "image_size": size, "weights": "none",
              "epochs": 2, "batch_size": 8, "early_stopping_patience": 0}
    values.update(overrides)
    return TrainConfig(**values)


def test_feature_extraction_saved_model_predicts_what_the_head_predicted(workspace, tiny):
    from core.models.classifier import head_of
    from core.models.features import cached_features
    from core.models.pipeline import make_image_dataset

    record = train_model(_config(tiny, head="keras"), workspace)
    assert record["status"] == "done", record.get("error")
    assert record["epochs_run"] == 2
    model = runs.load_run_model(workspace, record["run_id"])
    features = cached_features(workspace, record["feature_key"])
    head_probs = np.asarray(head_of(model)(np.asarray(features["val"])))
    images = make_image_dataset(tiny.paths("val"), image_size=record["image_size"], batch_size=8)
    model_probs = model.predict(images, verbose=0)
    np.testing.assert_allclose(model_probs, head_probs, atol=1e-5)


def test_second_run_reuses_the_feature_cache(workspace, tiny):
    first = train_model(_config(tiny, head="keras"), workspace)
    cache = workspace.features_dir / first["feature_key"]
    stamp = (cache / "meta.json").stat().st_mtime_ns
    second = train_model(_config(tiny, epochs=3, dropout=0.5, head="keras"), workspace)
    assert second["feature_key"] == first["feature_key"]
    assert (cache / "meta.json").stat().st_mtime_ns == stamp
    assert len(list(workspace.features_dir.iterdir())) == 1
    assert second["epochs_run"] == 3


def test_fine_tune_continues_epoch_numbers_and_keeps_batchnorm_frozen(workspace, tiny):
    record = train_model(_config(tiny, strategy="fine-tune", head="keras", fine_tune_epochs=2, fine_tune_layers=10,
                                 fine_tune_learning_rate=1e-5), workspace)
    assert record["status"] == "done", record.get("error")
    history = runs.load_history(workspace, record["run_id"])
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert [h["phase"] for h in history] == [1, 1, 2, 2]
    assert 0 < history[2]["learning_rate"] <= 1e-5
    model = runs.load_run_model(workspace, record["run_id"])
    backbone = model.get_layer("backbone")
    trainable = [layer for layer in backbone.layers if layer.trainable and layer.weights]
    assert trainable, "fine-tuning unfroze nothing"
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    assert record["phase2_trainable"]["trainable_params"] > 0


def test_from_scratch_trains_the_whole_network(workspace, tiny):
    record = train_model(_config(tiny, strategy="from-scratch", weights="imagenet"), workspace)
    assert record["status"] == "done", record.get("error")
    assert record["weights"].startswith("none")
    counts = record["phase1_trainable"]
    model = runs.load_run_model(workspace, record["run_id"])
    backbone = model.get_layer("backbone")
    assert all(layer.trainable for layer in backbone.layers if layer.weights)
    assert counts["trainable_params"] >= 0.95 * backbone.count_params()


def test_stop_during_training_keeps_the_best_model(workspace, tiny):
    folder_holder = {}

    def stop_after_first_epoch(record):
        runs.request_stop(workspace, folder_holder["run_id"])

    config = _config(tiny, epochs=1000, head="keras")
    run_id = runs.create_run(workspace, config, classes=tiny.classes, status="running")
    folder_holder["run_id"] = run_id
    from core.training.trainer import execute_run

    record = execute_run(workspace, run_id, on_epoch=stop_after_first_epoch)
    assert record["status"] == "stopped"
    assert record["epochs_run"] <= 3
    assert runs.model_path(workspace, run_id).exists()


def test_stop_before_any_epoch_saves_nothing(workspace, tiny):
    from core.training.trainer import execute_run

    run_id = runs.create_run(workspace, _config(tiny), classes=tiny.classes, status="running")
    runs.request_stop(workspace, run_id)
    record = execute_run(workspace, run_id)
    assert record["status"] == "stopped"
    assert not runs.model_path(workspace, run_id).exists()
    assert list(workspace.features_dir.iterdir()) == []


def test_a_failing_run_records_a_clear_error(workspace, tiny):
    record = train_model(_config(tiny, image_size=33), workspace)
    assert record["status"] == "failed"
    assert "image_size=33" in record["error"]


def test_config_rejects_unknown_strategy_with_the_choices():
    with pytest.raises(ConfigError, match="feature-extraction"):
        TrainConfig(dataset_id="x", strategy="magic")


def test_cli_train_json_has_the_contract_fields(workspace, tiny):
    size = str(_config(tiny).image_size)
    out = subprocess.run(
        [sys.executable, "-m", "core", "train", tiny.id, "--weights", "none", "--epochs", "1", "--batch-size", "8",
         "--image-size", size, "--workspace", str(workspace.root), "--json"],
        capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("epoch 1 phase 1")
    result = json.loads(lines[-1])
    assert set(result) >= {"run_id", "val_accuracy", "val_loss", "epochs_run", "timings", "model_path"}
    assert set(result["timings"]) >= {"ingest_s", "features_s", "train_s", "total_s", "features_runtime",
                                      "conversion_s"}
    assert result["epochs_run"] == 1


def test_cli_train_unknown_dataset_exits_2_with_one_error_line(workspace):
    out = subprocess.run([sys.executable, "-m", "core", "train", "no-such-dataset", "--workspace",
                          str(workspace.root)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error:") and len(out.stderr.strip().splitlines()) == 1
