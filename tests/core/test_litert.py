"""The fast feature extractor: converted once per machine, chosen by cost, Keras where LiteRT fails."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from core.models import litert
from core.models.extractors import (
    FastExtractor,
    LaterModel,
    fast_feature_extractor,
    plan_extraction,
    spawn_background_conversion,
)
from core.models.features import extract_features, feature_meta
from core.models.litert import ConvertedStore, LiteRTModel, extractor_key, litert_cache_dir
from tests.factories import make_tiny_dataset

SIZE = 32


def _tiny_extractor(seed: int = 0):
    """Raw pixels -> Rescaling -> Conv2D -> pooling: converts in seconds, unlike a registry backbone."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), dtype="float32")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


@pytest.fixture(scope="module")
def extractor():
    return _tiny_extractor()


@pytest.fixture(scope="module")
def converted(extractor):
    """The tiny extractor converted once for the module (a conversion costs seconds)."""
    content, _ = litert.convert_model(extractor)
    return content


@pytest.fixture
def store(tmp_path):
    return ConvertedStore(tmp_path / "litert")


def _meta():
    return {"backbone": "mobilenet_v2", "weights": "test", "weights_fingerprint": "none"}


def test_cache_folder_is_under_the_user_cache_unless_the_variable_names_one(monkeypatch, tmp_path):
    monkeypatch.delenv(litert.LITERT_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert litert_cache_dir() == tmp_path / "cache" / "transfer-studio" / "litert"
    monkeypatch.setenv(litert.LITERT_CACHE_ENV, str(tmp_path / "elsewhere"))
    assert litert_cache_dir() == tmp_path / "elsewhere"


def test_a_second_workspace_reuses_the_conversion_of_the_first(extractor, tmp_path, monkeypatch):
    from core.workspace import Workspace

    monkeypatch.setenv("TRANSFER_STUDIO_LITERT", "always")
    monkeypatch.setenv(litert.LITERT_CACHE_ENV, str(tmp_path / "machine"))
    runs = []
    for name in ("first", "second"):
        workspace = Workspace.open(tmp_path / name)
        dataset = make_tiny_dataset(workspace, tmp_path / name, per_class=4, size=40)
        features = extract_features(workspace, "key", extractor, dataset, image_size=SIZE, resize="squash",
                                    meta=_meta())
        runs.append((feature_meta(workspace, "key"), features, dataset))
    (first, _, _), (second, features, dataset) = runs
    assert first["runtime"] == second["runtime"] == "litert"
    assert first["conversion_s"] > 0 and second["conversion_s"] == 0.0
    assert first["images_per_s"] > 0 and second["threads"] == litert.cpu_threads()
    from core.models.pipeline import make_image_dataset

    assert len(dataset.splits) > 1  # one batch spans the split boundary; each row still lands in its split
    for split in dataset.splits:
        keras_rows = np.concatenate([extractor.predict_on_batch(batch) for batch in
                                     make_image_dataset(dataset.paths(split), image_size=SIZE)])
        np.testing.assert_allclose(features[split], keras_rows, atol=1e-5)
    assert len(list((tmp_path / "machine").glob("*.tflite"))) == 1
    assert not list((tmp_path / "machine").glob(".*"))  # no temporary file left behind


def test_a_backbone_measured_faster_on_keras_here_stays_on_keras_even_when_converted(store, converted):
    store.save(extractor_key("resnet50", 224, "imagenet-abc"), converted, {})
    store.record_speed("resnet50", 224, keras=30.0, litert=27.0)
    plan = plan_extraction("resnet50", 224, "imagenet-abc", 20_000, store=store, mode="auto")
    assert plan.runtime == "keras" and not plan.convert_now and not plan.background
    assert "30 against 27" in plan.reason
    store.record_speed("mobilenet_v2", 224, keras=100.0, litert=270.0)
    store.save(extractor_key("mobilenet_v2", 224, "imagenet-abc"), converted, {})
    assert plan_extraction("mobilenet_v2", 224, "imagenet-abc", 300, store=store, mode="auto").runtime == "litert"


def test_a_small_cold_dataset_runs_on_keras_and_a_big_one_converts_first(store):
    small = plan_extraction("mobilenet_v2", 224, "imagenet-abc", 300, store=store, mode="auto")
    assert small.runtime == "keras" and not small.convert_now and small.background
    big = plan_extraction("mobilenet_v2", 224, "imagenet-abc", 20_000, store=store, mode="auto")
    assert big.runtime == "litert" and big.convert_now and big.conversion_estimate_s > 0
    unnamed = plan_extraction("mobilenet_v2", 224, "weights-0123", 300, store=store, mode="auto")
    assert unnamed.runtime == "keras" and not unnamed.background  # random weights: nothing to rebuild later


def test_measured_speeds_move_the_break_even_point(store):
    store.record_speed("mobilenet_v2", 224, keras=100.0, litert=300.0, conversion_s=3.0)
    # 3 s of conversion is won back after 3 / (1/100 - 1/300) = 450 images (and a margin).
    assert plan_extraction("mobilenet_v2", 224, "imagenet-abc", 300, store=store, mode="auto").runtime == "keras"
    assert plan_extraction("mobilenet_v2", 224, "imagenet-abc", 900, store=store, mode="auto").convert_now


def test_a_converted_model_is_used_for_any_number_of_images(extractor, converted, store):
    store.save(extractor_key("mobilenet_v2", SIZE, "imagenet-abc"), converted, {})
    plan = plan_extraction("mobilenet_v2", SIZE, "imagenet-abc", 3, store=store, mode="auto")
    assert plan.runtime == "litert" and not plan.convert_now and plan.reason == "converted earlier on this machine"
    fast = FastExtractor(extractor, plan, backbone="mobilenet_v2", image_size=SIZE,
                         weights_fingerprint="imagenet-abc", store=store)
    images = np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(fast.predict_on_batch(images), extractor.predict_on_batch(images), atol=1e-5)
    assert fast.describe()["runtime"] == "litert" and fast.describe()["conversion_s"] == 0.0


def test_a_model_still_being_built_is_waited_for_only_when_keras_must_run(extractor, converted, store):
    store.save(extractor_key("mobilenet_v2", SIZE, "imagenet-abc"), converted, {})
    asked = []

    def resolve():
        asked.append(True)
        return extractor

    images = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    ready = plan_extraction("mobilenet_v2", SIZE, "imagenet-abc", 3, store=store, mode="auto")
    fast = FastExtractor(LaterModel(resolve), ready, backbone="mobilenet_v2", image_size=SIZE,
                         weights_fingerprint="imagenet-abc", store=store)
    assert fast.output_shape == (None, 8)
    np.testing.assert_allclose(fast.predict_on_batch(images), extractor.predict_on_batch(images), atol=1e-5)
    assert not asked and fast.runtime == "litert"

    off = plan_extraction("mobilenet_v2", SIZE, "imagenet-abc", 3, store=store, mode="off")
    slow = FastExtractor(LaterModel(resolve), off, backbone="mobilenet_v2", image_size=SIZE,
                         weights_fingerprint="imagenet-abc", store=store)
    np.testing.assert_allclose(slow.predict_on_batch(images), extractor.predict_on_batch(images))
    np.testing.assert_allclose(slow.predict_on_batch(images), extractor.predict_on_batch(images))
    assert asked == [True] and slow.runtime == "keras"  # made once, not once per batch


def test_off_turns_litert_off(store):
    plan = plan_extraction("mobilenet_v2", 224, "imagenet-abc", 10**6, store=store, mode="off")
    assert plan.runtime == "keras" and "TRANSFER_STUDIO_LITERT=off" in plan.reason


def test_a_failed_conversion_falls_back_to_keras_and_is_not_retried(extractor, store, monkeypatch):
    def broken(model):
        raise RuntimeError("op FancyOp is neither a custom op nor a flex op")

    monkeypatch.setattr(litert, "convert_model", broken)
    fast = fast_feature_extractor(extractor, backbone="mobilenet_v2", image_size=SIZE,
                                  weights_fingerprint=None, num_images=10**6, store=store)
    assert fast.plan.convert_now
    images = np.zeros((2, SIZE, SIZE, 3), dtype="float32")
    np.testing.assert_allclose(fast.predict_on_batch(images), extractor.predict_on_batch(images))
    assert fast.runtime == "keras" and "FancyOp" in fast.reason
    again = plan_extraction("mobilenet_v2", SIZE, fast.weights_fingerprint, 10**6, store=store, mode="always")
    assert again.runtime == "keras" and "failed before" in again.reason and "FancyOp" in again.reason


def test_a_delegate_failing_mid_pass_finishes_on_keras(extractor, converted, store, monkeypatch):
    store.save(extractor_key("mobilenet_v2", SIZE, "imagenet-abc"), converted, {})
    fast = fast_feature_extractor(extractor, backbone="mobilenet_v2", image_size=SIZE,
                                  weights_fingerprint="imagenet-abc", num_images=1, store=store)
    images = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    fast.predict_on_batch(images)
    assert fast.runtime == "litert"

    def refuse(self, batch):
        raise RuntimeError("Delegate refused the graph")

    monkeypatch.setattr(LiteRTModel, "predict_on_batch", refuse)
    np.testing.assert_allclose(fast.predict_on_batch(images), extractor.predict_on_batch(images))
    assert fast.runtime == "keras" and "Delegate refused" in fast.reason


def test_a_conversion_under_way_in_another_process_is_not_waited_for(extractor, store):
    fast = fast_feature_extractor(extractor, backbone="mobilenet_v2", image_size=SIZE,
                                  weights_fingerprint=None, num_images=10**6, store=store)
    with store.conversion_lock(fast.plan.key) as mine:  # a second open file: as another process holds it
        assert mine
        fast.predict_on_batch(np.zeros((1, SIZE, SIZE, 3), dtype="float32"))
    assert fast.runtime == "keras" and "another process" in fast.reason
    assert not store.has(fast.plan.key)


def test_background_conversion_is_off_when_asked_or_when_already_converted(converted, store, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_LITERT_BACKGROUND", "0")
    assert spawn_background_conversion("mobilenet_v2", 224, "imagenet-abc", store) is None
    monkeypatch.setenv("TRANSFER_STUDIO_LITERT_BACKGROUND", "1")
    store.save(extractor_key("mobilenet_v2", 224, "imagenet-abc"), converted, {})
    assert spawn_background_conversion("mobilenet_v2", 224, "imagenet-abc", store) is None


def test_keys_differ_by_backbone_size_and_weights():
    keys = {extractor_key(b, s, w) for b in ("mobilenet_v2", "resnet50") for s in (96, 224)
            for w in ("imagenet-1", "imagenet-2")}
    assert len(keys) == 8


def test_the_background_converter_rebuilds_only_the_same_weights(keras_home, store, monkeypatch):
    """The child process checks the weights fingerprint before converting (other weights: nothing written)."""
    monkeypatch.setenv("TRANSFER_STUDIO_LITERT_BACKGROUND", "1")
    child = spawn_background_conversion("mobilenet_v2", 224, "imagenet-000000000000", store,
                                        after_this_process=False)
    assert child is not None and child.wait(timeout=600) == 1
    assert "weights changed" in (store.folder / "background.log").read_text()
    assert not list(store.folder.glob("*.tflite"))


def test_the_background_conversion_starts_once_the_run_that_asked_for_it_has_ended(tmp_path):
    """The converter waits for its parent (the run) to end, so a cold run is not slowed by its conversion."""
    import subprocess
    import sys

    report = tmp_path / "waited.txt"
    grandchild = ("import os, sys, time; from core.models.extractors import wait_for_parent; "
                  f"ended = wait_for_parent(os.getppid(), timeout=120, poll=0.05); open({str(report)!r}, 'w')"
                  ".write(f'{ended} {os.getppid()}')")
    # The parent starts the converter stand-in, then works a little and ends: the stand-in must notice.
    parent = ("import subprocess, sys, time; "
              f"subprocess.Popen([sys.executable, '-c', {grandchild!r}], start_new_session=True); "
              "time.sleep(1.0); print('parent done')")
    done = subprocess.run([sys.executable, "-c", parent], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for _ in range(600):
        if report.exists() and report.read_text():
            break
        time.sleep(0.1)
    ended, _ = report.read_text().split()
    assert ended == "True"  # it went on because the parent had ended, not after its 120 s timeout
