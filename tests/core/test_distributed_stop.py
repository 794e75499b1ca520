"""Stop across workers is a decision every worker takes at the same point (the agreement itself is a collective;
here a stand-in for it, so the rules are tested without a cluster: tests/core/test_multiworker.py runs a real one)."""

from __future__ import annotations

import numpy as np
import pytest

from core.models.features import cached_features, extract_features
from core.progress import RunReporter, StopRequested
from tests.factories import make_tiny_dataset


class Agreement:
    """Stands in for the all-reduce: another worker's flag is ``theirs(call_number)``; records what was asked."""

    def __init__(self, theirs=lambda call: False):
        self.theirs, self.asked = theirs, []

    def __call__(self, flag: bool) -> bool:
        self.asked.append(flag)
        return flag or self.theirs(len(self.asked))


class Embedder:
    """A feature extractor without TensorFlow: 4 numbers per image."""

    output_shape = (None, 4)

    def predict_on_batch(self, images):
        return np.ones((len(images), 4), np.float32)


def _reporter(tmp_path, agreement=None) -> RunReporter:
    (tmp_path / "run").mkdir()
    reporter = RunReporter(tmp_path / "run")
    if agreement is not None:
        reporter.share_stop(agreement)
    return reporter


def test_across_workers_a_stop_file_counts_only_once_the_workers_agree(tmp_path):
    agreement = Agreement()
    reporter = _reporter(tmp_path, agreement)
    reporter.stage("phase 2")
    (tmp_path / "run" / "stop").touch()
    assert reporter.stop_requested() is False  # asking costs nothing and changes nothing between agreed points
    assert agreement.asked == []
    assert reporter.sync_stop() is True
    assert agreement.asked == [True]
    assert reporter.progress["stopped_by_user"] is True
    assert reporter.progress["stopped_at"]["stage"] == "phase 2"
    assert reporter.stop_requested() is True and reporter.sync_stop() is True
    assert agreement.asked == [True]  # once agreed, no worker asks again


def test_a_worker_without_a_stop_file_stops_when_another_one_asked(tmp_path):
    reporter = _reporter(tmp_path, Agreement(theirs=lambda call: True))
    assert reporter.sync_stop() is True
    assert reporter.progress["stopped_by_user"] is True


def test_in_one_process_sync_stop_only_looks_at_the_flag_file(tmp_path):
    reporter = _reporter(tmp_path)
    assert reporter.sync_stop() is False
    (tmp_path / "run" / "stop").touch()
    assert reporter.sync_stop() is True and reporter.stop_requested() is True
    assert "stopped_by_user" not in reporter.progress  # the stage that sees it decides, as before


def test_a_stop_agreed_in_a_training_step_records_where(tmp_path):
    reporter = _reporter(tmp_path, Agreement())
    reporter.stage("phase 2")
    reporter.agree_stop(phase=2, epoch=3, batch=5, of=9)
    assert reporter.stop_requested() is True
    assert reporter.progress["stopped_at"] == {"stage": "phase 2", "phase": 2, "epoch": 3, "batch": 5, "of": 9}


def test_the_feature_pass_across_workers_stops_at_the_batch_another_worker_asked(workspace, tmp_path):
    dataset = make_tiny_dataset(workspace, tmp_path)
    agreement = Agreement(theirs=lambda call: call == 3)  # 1: the cache question, 2: batch 1, 3: batch 2
    reporter = _reporter(tmp_path, agreement)
    reporter.stage("features")
    with pytest.raises(StopRequested):
        extract_features(workspace, "key", Embedder(), dataset, image_size=32, resize="squash", batch_size=4,
                         reporter=reporter)
    assert agreement.asked == [False, False, False]
    assert reporter.progress["stopped_at"] == {"stage": "features", "batch": 4, "of": 30}
    assert cached_features(workspace, "key") is None
    assert list(workspace.tmp_dir.iterdir()) == []


def test_when_another_worker_has_the_cache_the_pass_asks_at_no_batch(workspace, tmp_path):
    dataset = make_tiny_dataset(workspace, tmp_path)
    agreement = Agreement(theirs=lambda call: call == 1)  # the other worker has the embeddings cached
    reporter = _reporter(tmp_path, agreement)
    features = extract_features(workspace, "key", Embedder(), dataset, image_size=32, resize="squash",
                                batch_size=4, reporter=reporter)
    assert agreement.asked == [False]  # its only question: whether some worker has them
    assert sum(len(array) for array in features.values()) == 30
    assert "stopped_by_user" not in reporter.progress


def test_a_worker_with_the_cache_answers_the_question_and_reads_it(workspace, tmp_path):
    dataset = make_tiny_dataset(workspace, tmp_path)
    extract_features(workspace, "key", Embedder(), dataset, image_size=32, resize="squash", batch_size=4)
    agreement = Agreement()
    reporter = _reporter(tmp_path, agreement)
    features = extract_features(workspace, "key", Embedder(), dataset, image_size=32, resize="squash",
                                batch_size=4, reporter=reporter)
    assert agreement.asked == [True]
    assert sum(len(array) for array in features.values()) == 30


class ContentEmbedder:
    """A feature extractor without TensorFlow whose 4 numbers depend on the image (channel means and spread)."""

    output_shape = (None, 4)

    def predict_on_batch(self, images):
        images = np.asarray(images, np.float32)
        return np.concatenate([images.mean(axis=(1, 2)), images.std(axis=(1, 2, 3))[:, None]], axis=1)


def _split_pass(workspace, dataset, count: int, batch_size: int = 4):
    """Every worker's pass of a ``count``-way split run in turn in one process, with a stand-in gather: workers
    1.. record what they contribute (each sees only its own rows), worker 0 adds them all up. Returns worker 0's
    embeddings and every worker's number of gathers."""
    from core.models.features import WorkerShare

    contributions = {}

    def recorder(index):
        def gather(values):
            contributions.setdefault(index, []).append(np.array(values))
            return values

        return gather

    for index in range(1, count):
        extract_features(workspace, f"w{index}", ContentEmbedder(), dataset, image_size=32, resize="squash",
                         batch_size=batch_size, share=WorkerShare(index, count, recorder(index)))
    calls = iter(range(10_000))

    def total(values):
        call = next(calls)
        contributions.setdefault(0, []).append(np.array(values))
        return values + sum(contributions[index][call] for index in range(1, count))

    features = extract_features(workspace, "w0", ContentEmbedder(), dataset, image_size=32, resize="squash",
                                batch_size=batch_size, share=WorkerShare(0, count, total))
    return features, [len(contributions[index]) for index in range(count)]


@pytest.mark.parametrize("count", [2, 7])
def test_a_pass_split_across_workers_gathers_the_one_process_embeddings(workspace, tmp_path, monkeypatch, count):
    import core.models.features

    monkeypatch.setattr(core.models.features, "GATHER_FLOATS", 16)  # 4 rows a gather: the last of 30 is padded
    dataset = make_tiny_dataset(workspace, tmp_path)
    whole = extract_features(workspace, "one", ContentEmbedder(), dataset, image_size=32, resize="squash",
                             batch_size=4)
    split, gathers = _split_pass(workspace, dataset, count)
    assert set(split) == set(whole) == set(dataset.splits)
    for name in dataset.splits:
        np.testing.assert_array_equal(np.asarray(split[name]), np.asarray(whole[name]))
    assert gathers == [8] * count  # every worker takes part in every gather (30 rows, 4 a gather)
    assert not list(workspace.tmp_dir.iterdir())


def test_a_shorter_share_still_answers_every_stop_question_of_the_pass(workspace, tmp_path):
    from core.models.features import WorkerShare, feature_meta

    dataset = make_tiny_dataset(workspace, tmp_path)  # 30 images over 7 workers: shares of 5 and of 4 images
    asked = {}
    for index in (0, 6):
        agreement = Agreement()
        (tmp_path / f"r{index}").mkdir()
        extract_features(workspace, f"k{index}", ContentEmbedder(), dataset, image_size=32, resize="squash",
                         batch_size=4, reporter=_reporter(tmp_path / f"r{index}", agreement),
                         share=WorkerShare(index, 7, lambda values: values))
        asked[index] = len(agreement.asked)
        assert feature_meta(workspace, f"k{index}")["worker_images"] == (5 if index == 0 else 4)
    assert asked == {0: 3, 6: 3}  # the cache question, then one per batch of the longest share (5 images: 2)


def test_when_another_worker_has_the_cache_the_share_is_not_used(workspace, tmp_path):
    from core.models.features import WorkerShare, feature_meta

    dataset = make_tiny_dataset(workspace, tmp_path)
    agreement = Agreement(theirs=lambda call: call == 1)
    features = extract_features(workspace, "key", ContentEmbedder(), dataset, image_size=32, resize="squash",
                                batch_size=4, reporter=_reporter(tmp_path, agreement),
                                share=WorkerShare(1, 2, lambda values: pytest.fail("no gather expected")))
    assert sum(len(array) for array in features.values()) == 30
    assert "workers" not in feature_meta(workspace, "key")
