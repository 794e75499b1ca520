"""The Predictor: every image source, top-k, unknown answers, errors, bundles and bare .keras files."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from core.data.images import as_stored, load_rgb_image, prepare_image
from core.errors import ConfigError, DatasetError, ExportError, RunError
from core.models.prediction import UNKNOWN_LABEL, Predictor, results_csv, results_frame
from tests.trained_run import shared_tiny_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def predictor(tiny):
    return Predictor.from_run(tiny.workspace, tiny.run_id)


def test_predictions_match_the_model_on_prepared_pixels(tiny, predictor):
    paths = tiny.dataset.paths("val")
    batch = np.stack([prepare_image(as_stored(load_rgb_image(p)), 32) for p in paths])
    expected = np.asarray(predictor.model(batch, training=False))
    results = predictor.predict_images(paths, top_k=2)
    assert [r["label"] for r in results] == [tiny.dataset.classes[i] for i in expected.argmax(1)]
    np.testing.assert_allclose([r["probability"] for r in results], expected.max(1), atol=1e-6)


def test_tiny_model_learned_the_colours(tiny, predictor):
    paths = tiny.dataset.paths("val")
    labels = [tiny.dataset.classes[i] for i in tiny.dataset.label_indices("val")]
    hits = [r["label"] == label for r, label in zip(predictor.predict_images(paths), labels, strict=True)]
    assert np.mean(hits) >= 0.6


def test_every_image_source_gives_the_same_answer(tiny, predictor):
    path = tiny.dataset.paths("val")[0]
    data = path.read_bytes()
    upload = io.BytesIO(data)
    upload.name = "upload.jpg"
    sources = [path, str(path), data, upload, Image.open(path).convert("RGB"), ("named.jpg", data)]
    results = predictor.predict_images(sources, top_k=3)
    probabilities = [[p for _, p in r["top_k"]] for r in results]
    for row in probabilities[1:]:
        np.testing.assert_allclose(row, probabilities[0], atol=1e-6)
    assert [r["file"] for r in results[2:]] == ["image_3", "upload.jpg", "image_5", "named.jpg"]


def test_top_k_is_sorted_and_limited(predictor, tiny):
    result = predictor.predict_images(tiny.dataset.paths("val")[:1], top_k=2)[0]
    probs = [p for _, p in result["top_k"]]
    assert len(result["top_k"]) == 2 and probs == sorted(probs, reverse=True)
    assert result["top_k"][0] == (result["label"], result["probability"])


def test_unknown_when_top_probability_is_under_threshold(predictor, tiny):
    paths = tiny.dataset.paths("val")[:3]
    assert all(r["unknown"] and r["answer"] == UNKNOWN_LABEL for r in predictor.predict_images(paths, unknown_threshold=1.0))
    assert not any(r["unknown"] for r in predictor.predict_images(paths, unknown_threshold=0.0))
    assert not any(r["unknown"] for r in predictor.predict_images(paths))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        predictor.predict_images(paths, unknown_threshold=1.5)


def test_batch_size_does_not_change_results(predictor, tiny):
    paths = tiny.dataset.paths("val")
    np.testing.assert_allclose(predictor.predict_probabilities(paths, batch_size=2),
                               predictor.predict_probabilities(paths, batch_size=32), atol=1e-6)


def test_unreadable_image_raises_or_is_recorded(predictor, tiny, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("<html>not a picture</html>")
    good = tiny.dataset.paths("val")[0]
    with pytest.raises(DatasetError, match="notes.jpg"):
        predictor.predict_images([good, bad])
    results = predictor.predict_images([good, bad, good], on_error="record")
    assert results[1]["error"] and "notes.jpg" in results[1]["error"] and results[1]["label"] is None
    assert results[0]["label"] == results[2]["label"] and results[0]["error"] is None


def test_results_table_and_csv(predictor, tiny):
    results = predictor.predict_images(tiny.dataset.paths("val")[:2], top_k=2, unknown_threshold=0.99)
    frame = results_frame(results)
    assert list(frame.columns) == ["file", "answer", "label", "probability", "unknown", "top_k", "error"]
    assert len(frame) == 2
    csv = results_csv(results).decode()
    assert csv.splitlines()[0] == "file,answer,label,probability,unknown,top_k,error"


def test_bare_keras_file_takes_labels_beside_it_or_numbers_classes(tiny, tmp_path):
    from core.runs import model_path

    beside = Predictor.from_keras_file(model_path(tiny.workspace, tiny.run_id))
    assert beside.classes == tiny.dataset.classes
    shutil.copy(model_path(tiny.workspace, tiny.run_id), tmp_path / "alone.keras")
    alone = Predictor.load(str(tmp_path / "alone.keras"))
    assert alone.classes == ("class_0", "class_1", "class_2") and alone.image_size == 32


def test_load_dispatches_and_explains_unknown_sources(tiny, tmp_path):
    assert Predictor.load(tiny.run_id, tiny.workspace).source == tiny.run_id
    with pytest.raises(RunError, match="does not exist"):
        Predictor.load("no-such-run", tiny.workspace)
    with pytest.raises(ConfigError, match="neither an existing bundle"):
        Predictor.load(str(tmp_path / "missing.zip"), tiny.workspace)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ExportError, match="not a model bundle"):
        Predictor.load(str(tmp_path / "junk.zip"))


def test_class_count_must_match_model_outputs(predictor):
    with pytest.raises(ExportError, match="3 outputs but 2 class names"):
        Predictor(predictor.model, ["a", "b"])


def test_images_from_zip_skips_junk_and_feeds_predict_images(predictor, tiny, tmp_path):
    import zipfile

    from core.models.readers import images_from_zip

    path = tmp_path / "batch.zip"
    val = tiny.dataset.paths("val")[:2]
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(val[0], "photos/a.jpg")
        archive.write(val[1], "photos/b.jpg")
        archive.writestr("photos/readme.txt", "hello")
        archive.writestr("__MACOSX/photos/._a.jpg", "junk")
    images = images_from_zip(path, tmp_path)
    assert [name for name, _ in images] == ["photos/a.jpg", "photos/b.jpg"]
    results = predictor.predict_images(images)
    assert [r["file"] for r in results] == ["photos/a.jpg", "photos/b.jpg"]
    assert [r["label"] for r in results] == [r["label"] for r in predictor.predict_images(val)]
    with zipfile.ZipFile(tmp_path / "none.zip", "w") as archive:
        archive.writestr("notes.txt", "no images")
    with pytest.raises(DatasetError, match="no image files"):
        images_from_zip(tmp_path / "none.zip", tmp_path)


def test_an_original_file_and_its_stored_copy_reach_the_model_as_the_same_pixels(tiny, predictor):
    from core.insight.evaluation import evaluate_run

    entries = tiny.dataset.split_entries("val")
    originals = [tiny.source / entry.source for entry in entries]
    assert all(path.suffix == ".png" for path in originals)  # the stored copies are JPEGs: pixels differ
    from_originals = predictor.predict_probabilities(originals)
    from_stored = evaluate_run(tiny.workspace, tiny.run_id, "val", predictor=predictor).probabilities
    assert list(from_originals.argmax(1)) == list(from_stored.argmax(1))
    np.testing.assert_allclose(from_originals, from_stored, atol=1e-6)
