"""Metrics against hand-computed values, and evaluation of a real tiny run."""

import numpy as np
import pytest

from core.errors import ConfigError
from core.insight.evaluation import evaluate_predictions

CLASSES = ("ant", "bee", "cat")
# true:      a    a    a    b    b    c
# predicted: a    a    b    b    c    c
Y_TRUE = [0, 0, 0, 1, 1, 2]
PROBS = [
    [0.90, 0.05, 0.05],
    [0.60, 0.30, 0.10],
    [0.20, 0.70, 0.10],
    [0.10, 0.80, 0.10],
    [0.10, 0.35, 0.55],
    [0.20, 0.20, 0.60],
]


@pytest.fixture
def result():
    files = [f"img{i}.png" for i in range(6)]
    return evaluate_predictions(Y_TRUE, PROBS, CLASSES, files, split="val", run_id="r1")


def test_accuracy_and_macro_f1_match_hand_computed_values(result):
    assert result.accuracy == pytest.approx(4 / 6)
    # F1: ant 2*1*(2/3)/(5/3) = 0.8, bee 0.5, cat 2*0.5*1/1.5 = 2/3
    assert result.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_per_class_table_matches_hand_computed_values(result):
    table = {row["class"]: row for row in result.per_class}
    assert table["ant"] == pytest.approx({"class": "ant", "precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert table["bee"] == pytest.approx({"class": "bee", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert table["cat"] == pytest.approx({"class": "cat", "precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})


def test_confusion_matrix_rows_are_true_columns_predicted(result):
    assert result.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    frame = result.confusion_frame()
    assert frame.loc["ant", "bee"] == 1 and frame.loc["bee", "cat"] == 1


def test_confusion_cell_lists_the_images_behind_it(result):
    cell = result.records_in_cell("ant", "bee")
    assert [r["file"] for r in cell] == ["img2.png"]
    assert cell[0]["confidence"] == pytest.approx(0.7) and cell[0]["correct"] is False


def test_mistakes_are_sorted_by_confidence_descending(result):
    assert [(r["file"], r["true"], r["predicted"]) for r in result.mistakes()] == [
        ("img2.png", "ant", "bee"), ("img4.png", "bee", "cat")]


def test_accuracy_by_threshold_reports_coverage_and_accuracy(result):
    rows = {row["threshold"]: row for row in result.thresholds}
    assert rows[0.0]["coverage"] == 1.0 and rows[0.0]["accuracy"] == pytest.approx(4 / 6)
    # confidences 0.9 .6 .7 .8 .55 .6: at 0.6 five are kept, four of them right
    assert rows[0.6]["coverage"] == pytest.approx(5 / 6) and rows[0.6]["accuracy"] == pytest.approx(0.8)
    assert rows[0.75]["coverage"] == pytest.approx(2 / 6) and rows[0.75]["accuracy"] == 1.0
    assert rows[1.0]["coverage"] == 0.0 and rows[1.0]["accuracy"] is None


def test_class_never_predicted_counts_as_zero_f1():
    result = evaluate_predictions([0, 1, 2], [[1, 0, 0], [0, 1, 0], [0, 1, 0]], CLASSES)
    cat = result.per_class[2]
    assert (cat["precision"], cat["recall"], cat["f1"], cat["support"]) == (0.0, 0.0, 0.0, 1)
    assert result.macro_f1 == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_metrics_agree_with_sklearn_on_random_predictions():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    result = evaluate_predictions(y_true, probs, list("abcd"))
    y_pred = probs.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    assert result.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert result.macro_f1 == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert [r["f1"] for r in result.per_class] == pytest.approx(list(f1))
    assert [r["precision"] for r in result.per_class] == pytest.approx(list(precision))
    assert result.confusion == confusion_matrix(y_true, y_pred).tolist()


def test_to_dict_is_json_serialisable_with_class_names(result):
    import json

    data = json.loads(json.dumps(result.to_dict()))
    assert data["classes"] == list(CLASSES) and data["split"] == "val" and data["run_id"] == "r1"
    assert data["confusion_matrix"][0] == [2, 1, 0] and len(data["records"]) == 6


def test_mismatched_shapes_raise_config_error():
    with pytest.raises(ConfigError, match="3 classes"):
        evaluate_predictions([0, 1], [[0.5, 0.5], [0.5, 0.5]], CLASSES)
    with pytest.raises(ConfigError, match="2 labels and 1 predictions"):
        evaluate_predictions([0, 1], [[0.5, 0.25, 0.25]], CLASSES)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.trained_run import shared_tiny_run

    return shared_tiny_run(tmp_path_factory)


def test_evaluate_run_on_validation_split_matches_predictor(tiny):
    from core.insight.evaluation import evaluate_run
    from core.models.prediction import Predictor

    result = evaluate_run(tiny.workspace, tiny.run_id)
    paths = tiny.dataset.paths("val")
    probs = Predictor.from_run(tiny.workspace, tiny.run_id).predict_probabilities(paths)
    expected = np.mean(probs.argmax(1) == tiny.dataset.label_indices("val"))
    assert result.split == "val" and result.run_id == tiny.run_id and result.classes == tiny.dataset.classes
    assert result.num_images == len(paths) and result.accuracy == pytest.approx(expected)
    assert [r["file"] for r in result.records] == [str(p) for p in paths]
    assert sum(map(sum, result.confusion)) == len(paths)


def test_evaluate_run_test_split_only_when_dataset_has_one(tiny, tmp_path):
    from core.insight.evaluation import evaluate_run
    from tests.trained_run import copy_run_to_dataset, ingest_with_test_split

    with pytest.raises(ConfigError, match="no 'test' split"):
        evaluate_run(tiny.workspace, tiny.run_id, split="test")
    dataset = ingest_with_test_split(tiny.workspace, tmp_path)
    assert "test" in dataset.splits
    run_id = copy_run_to_dataset(tiny, dataset)
    result = evaluate_run(tiny.workspace, run_id, split="test")
    assert result.split == "test" and result.num_images == len(dataset.paths("test")) == 9


def test_evaluate_run_without_model_is_a_run_error(tiny):
    from core import runs
    from core.config import TrainConfig
    from core.errors import RunError
    from core.insight.evaluation import evaluate_run

    config = TrainConfig(dataset_id=tiny.dataset.id, image_size=32, weights="none")
    run_id = runs.create_run(tiny.workspace, config, classes=tiny.dataset.classes, status="failed")
    with pytest.raises(RunError, match="no saved model"):
        evaluate_run(tiny.workspace, run_id)
    with pytest.raises(RunError, match="does not exist"):
        evaluate_run(tiny.workspace, "missing-run")
