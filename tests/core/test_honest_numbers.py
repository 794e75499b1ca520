"""The saved model is the model reported, the headline comes from images that chose nothing, and heads are chosen
by cross-validation: tiny generated data, random weights (mechanics, not accuracy)."""

from __future__ import annotations

import numpy as np
import pytest

from core import runs
from core.config import TrainConfig
from core.data.splits import MIN_CLASS_IMAGES_FOR_TEST, SplitItem, assign_splits
from core.training.trainer import train_model
from tests.factories import make_tiny_dataset
from tests.trained_run import ingest_with_test_split


def _config(dataset, **overrides) -> TrainConfig:
    values = {"dataset_id": dataset.id, "backbone": "mobilenet_v2", "image_size": 96, "weights": "none",
              "epochs": 2, "batch_size": 8, "early_stopping_patience": 0}
    values.update(overrides)
    return TrainConfig(**values)


def _evaluate_saved(workspace, run_id, split):
    from core.insight.evaluation import evaluate_run

    return evaluate_run(workspace, run_id, split=split)


def test_a_fine_tune_phase_that_only_gets_worse_saves_the_reported_model(workspace, tmp_path):
    dataset = ingest_with_test_split(workspace, tmp_path)
    # A learning rate of 0.5 on the whole backbone wrecks it: phase 2 must not replace phase 1's weights.
    record = train_model(_config(dataset, strategy="fine-tune", fine_tune_epochs=2, fine_tune_learning_rate=0.5),
                         workspace)
    assert record["status"] == "done", record.get("error")
    history = runs.load_history(workspace, record["run_id"])
    best_selection = max(h["val_accuracy"] for h in history)
    assert record["selection_score"][0] == pytest.approx(best_selection)
    saved_val = _evaluate_saved(workspace, record["run_id"], "val")
    assert saved_val.accuracy == pytest.approx(record["selection_score"][0], abs=1e-6)  # Keras metrics: float32
    saved_test = _evaluate_saved(workspace, record["run_id"], "test")
    assert record["headline"]["split"] == "test"
    assert record["headline"]["accuracy"] == pytest.approx(saved_test.accuracy, abs=1e-9)


def test_headline_comes_from_val_when_there_is_no_test_and_choices_use_a_train_holdout(workspace, tmp_path):
    dataset = make_tiny_dataset(workspace, tmp_path)
    record = train_model(_config(dataset, strategy="fine-tune", fine_tune_epochs=1), workspace)
    assert record["status"] == "done", record.get("error")
    assert record["roles"]["headline_split"] == "val"
    assert record["roles"]["selection"].startswith("holdout of")
    fit, held = record["roles"]["fit_images"], record["roles"]["selection_images"]
    assert fit + held == len(dataset.split_entries("train")) and held >= len(dataset.classes)
    headline = record["headline"]
    assert headline["n"] == len(dataset.split_entries("val"))
    low, high = headline["ci95"]
    assert low <= headline["accuracy"] <= high
    assert headline["accuracy"] == pytest.approx(_evaluate_saved(workspace, record["run_id"], "val").accuracy)


def test_feature_extraction_chooses_its_head_by_cross_validation_and_saves_it(workspace, tmp_path):
    from core.models.classifier import head_of
    from core.models.features import cached_features

    dataset = make_tiny_dataset(workspace, tmp_path)
    record = train_model(_config(dataset, head="auto"), workspace)
    assert record["status"] == "done", record.get("error")
    selection = record["head_selection"]
    assert {c["family"] for c in selection["candidates"]} == {"linear", "mlp"}
    assert selection["chosen"] == selection["candidates"][0]["name"]
    scores = [c["accuracy"] for c in selection["candidates"]]
    assert scores == sorted(scores, reverse=True)
    model = runs.load_run_model(workspace, record["run_id"])
    features = cached_features(workspace, record["feature_key"])
    probabilities = np.asarray(head_of(model)(np.asarray(features["val"])))
    accuracy = float(np.mean(probabilities.argmax(1) == dataset.label_indices("val")))
    assert record["headline"]["accuracy"] == pytest.approx(accuracy)
    assert record["cv_estimate"]["method"] == "cross-validation"
    assert record["cv_estimate"]["n"] == len(dataset.entries)


def test_fitted_heads_load_into_keras_heads_exactly():
    from core.models.classifier import build_head
    from core.models.heads import HeadCandidate, fit_candidate, load_head_weights

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 16)).astype("float32") * 3 + 1
    for num_classes in (2, 3):
        y = rng.integers(0, num_classes, 60)
        x[np.arange(60), y] += 4
        for candidate in (HeadCandidate("linear", "linear", l2=0.5),
                          HeadCandidate("mlp", "mlp", hidden_units=8, dropout=0.2, weight_decay=1e-3, epochs=3)):
            fitted = fit_candidate(candidate, x, y, num_classes)
            head = build_head(16, num_classes, hidden_units=fitted.hidden_units)
            load_head_weights(head, fitted)
            np.testing.assert_allclose(np.asarray(head(x)), fitted.predict_proba(x), atol=1e-5)


def test_cross_validation_prefers_the_candidate_that_generalizes():
    from core.models.heads import HeadCandidate, cross_validate

    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 40)
    x = rng.normal(size=(80, 200)).astype("float32")  # 200 noise dimensions and one weak signal
    x[:, 0] += (y * 2 - 1) * 1.0
    strong = HeadCandidate("strong L2", "linear", l2=1e-3)
    none = HeadCandidate("almost no L2", "linear", l2=1e4)
    results = cross_validate([none, strong], x, y, np.arange(80).astype(str), 2)
    assert results[0]["name"] == "strong L2"
    assert results[0]["folds"] == 5


def test_cross_validation_scores_every_fold_of_every_candidate_and_reports_their_sample_spread():
    from core.models.heads import HeadCandidate, cross_validate, fit_candidates, fold_indices

    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2], 20)
    x = rng.normal(size=(60, 12)).astype("float32")
    x[np.arange(60), y] += 1.5
    groups = np.arange(60).astype(str)
    candidates = [HeadCandidate("linear C=0.1", "linear", l2=0.1), HeadCandidate("linear C=10", "linear", l2=10.0),
                  HeadCandidate("mlp", "mlp", hidden_units=8, dropout=0.2, weight_decay=1e-3, epochs=3)]
    progress = []
    results = {r["name"]: r for r in cross_validate(candidates, x, y, groups, 3, seed=4,
                                                     on_candidate=lambda done, total: progress.append(total))}
    by_fold = {c.name: [] for c in candidates}
    for train_index, test_index in fold_indices(y, groups, seed=4):
        for head in fit_candidates(candidates, x[train_index], y[train_index], 3, seed=4):
            by_fold[head.candidate.name].append(np.mean(head.predict_proba(x[test_index]).argmax(1) == y[test_index]))
    for name, scores in by_fold.items():
        assert results[name]["accuracy"] == pytest.approx(np.mean(scores))
        assert results[name]["std"] == pytest.approx(np.std(scores, ddof=1))  # the sample standard deviation
    assert len(progress) == 5 * 2 and set(progress) == {10}  # the linear path and the MLP, on each of 5 folds


def test_a_head_on_embeddings_is_put_on_a_model_built_in_the_background(workspace, tmp_path):
    dataset = make_tiny_dataset(workspace, tmp_path)
    record = train_model(_config(dataset, head="linear"), workspace)
    assert record["status"] == "done", record.get("error")
    timings = record["timings"]
    assert timings["build_ahead_s"] > 0  # the backbone was built by its own thread
    assert timings["build_s"] >= 0 and timings["train_s"] >= 0
    assert record["headline"]["accuracy"] == pytest.approx(_evaluate_saved(workspace, record["run_id"], "val").accuracy)


def test_a_background_build_that_fails_ends_the_run_with_its_error(workspace, tmp_path, monkeypatch):
    import core.models.classifier as classifier

    def broken(*args, **kwargs):
        raise ValueError("the weights file is damaged")

    monkeypatch.setattr(classifier, "build_classifier", broken)
    dataset = make_tiny_dataset(workspace, tmp_path)
    record = train_model(_config(dataset, head="linear"), workspace)
    assert record["status"] == "failed" and "the weights file is damaged" in record["error"]


def test_a_test_split_is_carved_only_from_large_uploads_without_splits():
    big = [SplitItem(label, f"{label}-{i}", None) for label in "ab" for i in range(MIN_CLASS_IMAGES_FOR_TEST)]
    big += [SplitItem("a", "a-0", None)]  # a duplicate: must land with its twin
    splits = assign_splits(big, 0.2, seed=0)
    assert splits.count("test") > 0 and splits.count("val") > 0
    twins = [s for item, s in zip(big, splits, strict=True) if item.sha256 == "a-0"]
    assert len(set(twins)) == 1
    for label in "ab":
        share = sum(1 for item, s in zip(big, splits, strict=True) if item.label == label and s == "test")
        assert 0.13 <= share / MIN_CLASS_IMAGES_FOR_TEST <= 0.17
    small = [SplitItem(label, f"{label}-{i}", None) for label in "ab" for i in range(MIN_CLASS_IMAGES_FOR_TEST - 1)]
    assert "test" not in assign_splits(small, 0.2)
    given_val = [SplitItem(item.label, item.sha256, "val" if i % 5 == 0 else "train") for i, item in enumerate(big)]
    assert "test" not in assign_splits(given_val, 0.2)


def test_wilson_interval_matches_the_textbook_values():
    from core.data.roles import wilson_interval

    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_feature_cache_key_holds_the_seed_only_for_random_weights():
    from core.models.features import feature_key

    random = [feature_key("d", "mobilenet_v2", 96, "squash", "none", seed=seed) for seed in (0, 1)]
    assert random[0] != random[1]
    pretrained = [feature_key("d", "mobilenet_v2", 96, "squash", "imagenet-abc", seed=seed) for seed in (0, 1)]
    assert pretrained[0] == pretrained[1]


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_eta_covers_every_epoch_validation_and_the_stages_after(tmp_path):
    from core.progress import ProgressCallback, RunReporter

    reporter = RunReporter(tmp_path)
    reporter.clock = clock = _Clock()
    reporter.plan([("phase 1", 50.0), ("saving", 2.0), ("evaluating", 3.0)])
    reporter.stage("phase 1")
    callback = ProgressCallback(reporter, phase=1, steps=10, total_epochs=5, validation_steps=3)

    class _Model:
        stop_training = False

    callback.set_model(_Model())
    for epoch in range(2):  # two whole epochs: 10 batches of 1 s, then 2 s of validation
        callback.on_epoch_begin(epoch)
        for batch in range(10):
            clock.now += 1.0
            callback.on_train_batch_end(batch)
        clock.now += 2.0
        callback._epoch_times.append(clock.now - callback._epoch_start)
    callback.on_epoch_begin(2)
    clock.now += 1.0
    callback.on_train_batch_end(0)
    # 9 batches + 2 s validation left in epoch 3, then 2 epochs of 12 s, then 5 s of later stages.
    assert reporter.progress["eta"] == pytest.approx(9 + 2 + 24 + 5)


def test_a_new_stage_starts_without_the_last_stages_position(tmp_path):
    """Phase 2's first step can take a while (it traces the network): until then it must not read "batch 12 of
    12" (phase 1's head search) as its own."""
    import json

    from core.progress import RunReporter

    reporter = RunReporter(tmp_path)
    reporter.stage("phase 1", phase_started_epoch=1)
    reporter.batch(12, 12, epoch=1, total_epochs=1)
    reporter.progress["stopped_by_user"] = False
    reporter.stage("phase 2", phase_started_epoch=2, epoch=2, total_epochs=11)
    written = json.loads((tmp_path / "progress.json").read_text())
    assert written["stage"] == "phase 2" and (written["epoch"], written["total_epochs"]) == (2, 11)
    assert not {"batch", "of", "eta", "elapsed"} & set(written)
    assert written["stopped_by_user"] is False and "started_at" in written  # what is not a position stays


def test_folds_and_the_holdout_keep_near_identical_images_together(workspace, tmp_path):
    from PIL import Image

    from core.data.datasets import ingest
    from core.data.roles import data_roles
    from core.models.heads import fold_indices
    from tests.factories import make_class_folders

    folder = make_class_folders(tmp_path / "src", per_class=12, size=64)
    for name in ("red", "green", "blue"):  # the same pictures again, re-encoded: other bytes, same content
        for index in range(4):
            Image.open(folder / name / f"{name}_{index:03d}.png").convert("RGB").save(
                folder / name / f"copy_{index}.jpg", quality=70)
    dataset = ingest(folder, workspace, val_fraction=0.3, seed=0)
    entries = dataset.split_entries("train")
    groups = dataset.content_groups("train")
    by_sha = {entry.sha256 for entry in entries}
    assert len(set(groups)) < len(by_sha), "re-encoded copies should share a group with their originals"
    labels = dataset.label_indices("train")
    for _, test_index in fold_indices(labels, groups, folds=3):
        inside = {groups[i] for i in test_index}
        outside = {groups[i] for i in range(len(groups)) if i not in set(test_index.tolist())}
        assert not inside & outside
    roles = data_roles(dataset, needs_selection=True)
    held = {groups[i] for i in roles.selection_index}
    fit = {groups[i] for i in roles.fit_index}
    assert held and not held & fit


def test_fine_tuning_replaces_the_feature_extraction_model_only_by_a_win_beyond_the_noise():
    import keras

    from core.progress import Best, BestWeights
    from core.training.phases import handover_margin

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    kept = [w.copy() for w in model.get_weights()]
    assert handover_margin(20, 0.9) == pytest.approx(2 * (0.9 * 0.1 / 20) ** 0.5)  # 2.7 images: three needed
    callback = BestWeights(Best(score=(0.9, 0.0), weights=kept, epoch=1, margin=handover_margin(20, 1.0)),
                           target=model)  # a perfect score has no spread: at least two images
    callback.set_model(model)
    callback.on_epoch_end(1, {"val_accuracy": 0.9, "val_loss": 0.01})  # same images right, more confident
    assert callback.best.epoch == 1
    callback.on_epoch_end(2, {"val_accuracy": 0.95, "val_loss": 0.01})  # one more of 20 right: can be luck
    assert callback.best.epoch == 1
    callback.on_epoch_end(3, {"val_accuracy": 1.0, "val_loss": 0.5})  # two more right
    assert callback.best.epoch == 4 and callback.best.score == (1.0, -0.5) and callback.best.margin == 0.0
    callback.on_epoch_end(4, {"val_accuracy": 1.0, "val_loss": 0.4})  # within phase 2 a lower loss breaks ties
    assert callback.best.epoch == 5


def test_a_candidate_level_with_the_best_within_one_standard_error_wins_if_it_is_simpler():
    from core.models.heads import MLP_CANDIDATES, HeadCandidate, one_standard_error_choice

    simple, complex_ = HeadCandidate("linear C=0.01", "linear", l2=0.01), MLP_CANDIDATES[0]
    ranked = [{"name": complex_.name, "accuracy": 0.93, "std": 0.03, "folds": 5},   # SE 0.0134
              {"name": simple.name, "accuracy": 0.92, "std": 0.03, "folds": 5}]
    assert one_standard_error_choice(ranked, [simple, complex_]) == 1
    ranked[1]["accuracy"] = 0.90  # now clearly worse: the best stays
    assert one_standard_error_choice(ranked, [simple, complex_]) == 0
    looser = HeadCandidate("linear C=10", "linear", l2=10.0)  # weaker L2 is the less simple linear head
    ranked = [{"name": looser.name, "accuracy": 0.93, "std": 0.0, "folds": 5},
              {"name": simple.name, "accuracy": 0.93, "std": 0.0, "folds": 5}]
    assert one_standard_error_choice(ranked, [looser, simple]) == 1
