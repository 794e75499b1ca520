"""Ingestion of the real zips in ../shared/data with their real quirks."""

from __future__ import annotations

import zipfile

import pytest
from PIL import Image

from core.data.datasets import ingest

pytestmark = pytest.mark.real


def test_brain_tumor_mri_duplicates_and_pngs_named_jpg(shared_data, workspace):
    path = shared_data("brain_tumor_mri.zip")
    dataset = ingest(path, workspace)
    summary = dataset.summary
    assert dataset.classes == ("no", "yes") and summary["class_totals"] == {"no": 98, "yes": 155}
    assert summary["rejected"] == [] and summary["skipped"] == []
    groups = summary["duplicates"]
    assert len(groups) == 22 and sum(len(g["files"]) for g in groups) == 47
    assert all(g["kinds"] == ["within_class"] for g in groups)  # each group inside one class, one split
    with zipfile.ZipFile(path) as archive:
        png_named_jpg = [n for n in archive.namelist() if n.lower().endswith(".jpg")
                         and archive.read(n)[:8] == b"\x89PNG\r\n\x1a\n"]
    assert len(png_named_jpg) == 6
    sources = {e.source for e in dataset.entries}
    assert set(png_named_jpg) <= sources
    assert any(w["code"] == "grayscale" for w in summary["warnings"])
    assert any(w["code"] == "duplicates" for w in summary["warnings"])


def test_hymenoptera_split_folders_and_gif_placeholder(shared_data, workspace):
    dataset = ingest(shared_data("hymenoptera.zip"), workspace)
    assert dataset.summary["counts"] == {"train": {"ants": 124, "bees": 121}, "val": {"ants": 70, "bees": 83}}
    # imageNotFound.gif is a real, decodable 300x300 palette GIF ("We're sorry, this image could not be
    # found"): nothing in its bytes says it is a placeholder, so it is kept as an ant image, converted to RGB.
    gif = next(e for e in dataset.entries if e.source == "train/ants/imageNotFound.gif")
    assert (gif.label, gif.split, gif.width, gif.height) == ("ants", "train", 300, 300)
    with Image.open(dataset.root / gif.file) as stored:
        assert stored.format == "JPEG" and stored.mode == "RGB"


def test_sign_language_digits_mixed_sizes_and_upper_case_extensions(shared_data, workspace):
    dataset = ingest(shared_data("sign_language_digits.zip"), workspace)
    summary = dataset.summary
    assert dataset.classes == tuple(str(d) for d in range(10)) and summary["total_images"] == 2062
    assert summary["rejected"] == []
    large = [e for e in dataset.entries if e.width == 3024]
    assert len(large) == 3 and {e.label for e in large} == {"7"}
    assert summary["image_sizes"]["width"]["min"] == 100
    assert all(e.source.endswith(".JPG") for e in dataset.entries[:5])
    for entry in large:
        with Image.open(dataset.root / entry.file) as stored:
            assert max(stored.size) == 512
    val = summary["counts"]["val"]
    assert all(40 <= n <= 42 for n in val.values())
