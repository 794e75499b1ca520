"""An uploaded bundle zip goes through the same guarded reader as every other upload."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile

import pytest

from core.errors import ExportError
from core.models.prediction import Predictor
from tests.trained_run import shared_tiny_run


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_bundle_bomb_is_refused_naming_the_file_with_bounded_memory(tmp_path):
    # 64 MiB of zeros compresses about 1000:1: read whole, it would sit in memory before Keras even looks.
    path = _zip(tmp_path / "my-bundle.zip", {"model.keras": bytes(64 * 1024**2), "labels.json": b'["a", "b"]'})
    tracemalloc.start()
    try:
        with pytest.raises(ExportError, match="my-bundle.zip") as caught:
            Predictor.from_bundle(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "zip bomb" in str(caught.value)
    assert peak < 8 * 1024**2


def test_too_many_entries_in_a_bundle_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_MAX_ENTRIES", "3")
    path = _zip(tmp_path / "crowded.zip", {f"junk/{i}.txt": b"x" for i in range(5)} | {"model.keras": b"k"})
    with pytest.raises(ExportError, match="crowded.zip.*TRANSFER_STUDIO_MAX_ENTRIES"):
        Predictor.from_bundle(path)


def test_a_model_member_over_its_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_MAX_MODEL_BYTES", "1000")
    path = _zip(tmp_path / "big.zip", {"model.keras": b"\x01" * 5000, "labels.json": b'["a", "b"]'})
    with pytest.raises(ExportError, match="TRANSFER_STUDIO_MAX_MODEL_BYTES"):
        Predictor.from_bundle(path)


def test_only_a_member_named_exactly_model_keras_counts(tmp_path):
    path = _zip(tmp_path / "odd.zip", {"xmodel.keras": b"not a model", "labels.json": b'["a", "b"]'})
    with pytest.raises(ExportError, match="has no model.keras"):
        Predictor.from_bundle(path)


def test_a_real_bundle_inside_one_folder_still_loads(tmp_path_factory, tmp_path):
    from core import runs

    tiny = shared_tiny_run(tmp_path_factory)
    model = runs.model_path(tiny.workspace, tiny.run_id).read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bundle/model.keras", model)
        archive.writestr("bundle/labels.json", json.dumps(list(tiny.dataset.classes)))
        archive.writestr("bundle/config.json", json.dumps({"resize": "squash"}))
    (tmp_path / "wrapped.zip").write_bytes(buffer.getvalue())
    predictor = Predictor.from_bundle(tmp_path / "wrapped.zip")
    assert predictor.classes == tuple(tiny.dataset.classes)
