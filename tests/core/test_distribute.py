"""Multi-device training with a real MirroredStrategy over two logical CPU devices."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_mirrored_strategy_over_two_cpu_devices_learns():
    code = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from core.training.distribute import choose_strategy
        strategy = choose_strategy("mirrored")
        assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
        rng = np.random.default_rng(0)
        x = rng.normal(size=(512, 8)).astype("float32")
        y = (x[:, 0] + x[:, 1] > 0).astype("int32")
        with strategy.scope():
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                      keras.layers.Dense(2, activation="softmax")])
            model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", metrics=["accuracy"])
        before = model.evaluate(x, y, verbose=0)[1]
        model.fit(x, y, epochs=20, batch_size=32, verbose=0)
        after = model.evaluate(x, y, verbose=0)[1]
        print(strategy.num_replicas_in_sync, before, after)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    replicas, before, after = out.stdout.split()[-3:]
    assert replicas == "2"
    assert float(after) >= 0.9 > float(before)


def test_auto_strategy_on_this_cpu_machine_is_the_default_one():
    code = "from core.training.distribute import choose_strategy; import tensorflow as tf; " \
           "print(choose_strategy('auto') is tf.distribute.get_strategy())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("True")


def test_under_mixed_precision_the_model_still_outputs_float32_probabilities():
    code = textwrap.dedent("""
        import keras, numpy as np
        keras.mixed_precision.set_global_policy("mixed_float16")
        from core.models.backbones import get_backbone
        from core.models.classifier import build_classifier
        from core.models.weights import resolve_weights
        spec = get_backbone("mobilenet_v2")
        model = build_classifier(spec, image_size=96, num_classes=3, weights=resolve_weights(spec, 96, "none"))
        probs = np.asarray(model(np.zeros((2, 96, 96, 3), "float32")))
        print(model.get_layer("backbone").compute_dtype, probs.dtype, round(float(probs.sum()), 3))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-3:] == ["float16", "float32", "2.0"]


def test_the_training_engine_runs_under_mirrored_strategy_on_two_cpu_devices(tmp_path):
    """Phase 1 (the head chosen on cached embeddings) and a fine-tune phase on images, each replica half a batch."""
    code = textwrap.dedent(f"""
        import json, numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from core import runs
        from core.config import TrainConfig
        from core.data.sample import create_sample_dataset
        from core.models.pipeline import make_image_dataset
        from core.training.trainer import train_model
        from core.workspace import Workspace
        workspace = Workspace.open({str(tmp_path / "workspace")!r})
        dataset = create_sample_dataset(workspace)
        record = train_model(TrainConfig(dataset_id=dataset.id, backbone="mobilenet_v3_small", image_size=96,
                                         weights="none", strategy="fine-tune", head="auto", fine_tune_epochs=1,
                                         fine_tune_layers=8, batch_size=32, early_stopping_patience=0,
                                         distribution="mirrored"), workspace)
        model = runs.load_run_model(workspace, record["run_id"])
        images = make_image_dataset(dataset.paths("val")[:6], image_size=96, batch_size=6)
        probabilities = model.predict(images, verbose=0)
        print(json.dumps({{"record": record, "history": runs.load_history(workspace, record["run_id"]),
                          "shape": list(probabilities.shape), "sums": probabilities.sum(axis=1).tolist()}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    record, history = result["record"], result["history"]
    assert record["status"] == "done", (record.get("error"), record.get("error_details"))
    assert record["distribution"]["strategy"] == "MirroredStrategy"
    assert record["distribution"]["replicas"] == 2 and record["distribution"]["per_replica_batch"] == 16
    assert [(h["epoch"], h["phase"]) for h in history] == [(1, 1), (2, 2)]
    assert history[0]["head"] and history[1]["val_accuracy"] is not None and history[1]["loss"] > 0
    assert record["phase2_trainable"]["trainable_params"] > 0
    assert result["shape"] == [6, 4]
    assert all(abs(total - 1.0) < 1e-5 for total in result["sums"])
