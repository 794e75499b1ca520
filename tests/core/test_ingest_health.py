"""Ingestion's part of the health check: perceptual hashes, counted conversions, near-duplicates kept in one split."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from core.data.datasets import ingest
from core.data.versions import create_version


def _blocks(seed: int, size: int = 96) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).resize(
        (size, size), Image.Resampling.NEAREST)


def test_conversions_are_counted_and_hashes_kept_in_the_manifest(tmp_path, workspace):
    for label in ("a", "b"):
        (tmp_path / "up" / label).mkdir(parents=True)
        for index in range(3):
            _blocks(index + (10 if label == "b" else 0)).save(tmp_path / "up" / label / f"{index}.png")
    rotated = _blocks(50)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    rotated.save(tmp_path / "up/a/rotated.jpg", exif=exif.tobytes())
    _blocks(51).convert("L").save(tmp_path / "up/a/gray.png")
    _blocks(52).convert("P").save(tmp_path / "up/b/palette.png")
    _blocks(53).convert("CMYK").save(tmp_path / "up/b/cmyk.jpg")
    dataset = ingest(tmp_path / "up", workspace)
    assert dataset.summary["conversions"] == {"exif_rotated": 1, "colour_modes": {"CMYK": 1, "L": 1, "P": 1}}
    assert all(len(entry.phash) == 16 for entry in dataset.entries)
    version = create_version(workspace, dataset.id, exclude={dataset.entries[0].file})
    assert [e.phash for e in version.entries] == [e.phash for e in dataset.entries[1:]]


def test_a_generated_split_keeps_resized_and_reencoded_copies_with_their_original(tmp_path, workspace):
    for label, offset in (("a", 0), ("b", 100)):
        folder = tmp_path / "up" / label
        folder.mkdir(parents=True)
        for index in range(20):
            original = _blocks(offset + index)
            original.save(folder / f"{index}.png")
            if index % 2 == 0:
                original.resize((71, 71)).save(folder / f"{index}-small.png")
                buffer = io.BytesIO()
                original.save(buffer, "JPEG", quality=60)
                (folder / f"{index}-copy.jpg").write_bytes(buffer.getvalue())
    for seed in range(3):
        dataset = ingest(tmp_path / "up", workspace, val_fraction=0.3, seed=seed)
        split = {entry.source: entry.split for entry in dataset.entries}
        assert {split[f"a/{i}.png"] for i in range(20)} == {"train", "val"}
        for label in ("a", "b"):
            for index in range(0, 20, 2):
                assert split[f"{label}/{index}-small.png"] == split[f"{label}/{index}.png"]
                assert split[f"{label}/{index}-copy.jpg"] == split[f"{label}/{index}.png"]
