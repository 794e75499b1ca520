"""Ingestion behaviour: duplicates, the grouped split, the summary, errors, re-use, list and delete, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from core.data.datasets import delete_dataset, ingest, list_datasets, load_dataset
from core.data.splits import SplitItem, assign_splits
from core.errors import ConfigError, DatasetError
from tests.core.test_ingest_support import class_files, image_bytes, listing, make_zip


def test_duplicates_within_class_across_classes_and_across_splits_are_grouped(tmp_path, workspace):
    same, conflict, leak = image_bytes(900), image_bytes(901), image_bytes(902)
    files = {**class_files(per_class=3, prefix="train/"), **class_files(per_class=2, prefix="val/", seed=40)}
    files.update({"train/cats/dup_a.png": same, "train/cats/dup_b.png": same,
                  "train/cats/c1.png": conflict, "train/dogs/c2.png": conflict,
                  "train/dogs/l1.png": leak, "val/dogs/l2.png": leak})
    dataset = ingest(make_zip(tmp_path / "d.zip", files), workspace)
    assert len({e.file for e in dataset.entries}) == len(dataset.entries)  # one stored copy per row
    summary = dataset.summary
    kinds = {tuple(sorted(f["source"] for f in g["files"])): g["kinds"] for g in summary["duplicates"]}
    assert kinds == {("train/cats/dup_a.png", "train/cats/dup_b.png"): ["within_class"],
                     ("train/cats/c1.png", "train/dogs/c2.png"): ["conflicting_labels"],
                     ("train/dogs/l1.png", "val/dogs/l2.png"): ["across_splits"]}
    codes = {w["code"] for w in summary["warnings"]}
    assert {"duplicates", "conflicting_labels", "leakage"} <= codes


def test_generated_split_keeps_identical_images_together(tmp_path, workspace):
    files = class_files(per_class=20)
    copy = image_bytes(12345)
    for i in range(6):
        files[f"cats/copy_{i}.png"] = copy
    dataset = ingest(make_zip(tmp_path / "g.zip", files), workspace)
    splits = {e.split for e in dataset.entries if e.source.startswith("cats/copy_")}
    assert len(splits) == 1
    assert not any("across_splits" in g["kinds"] for g in dataset.summary["duplicates"])


def test_generated_split_is_stratified_seeded_and_order_independent():
    items = [SplitItem("a" if i < 60 else "b", f"{i:04d}", None) for i in range(100)]
    first = assign_splits(items, 0.25, seed=3)
    again = dict(zip([it.sha256 for it in reversed(items)], assign_splits(items[::-1], 0.25, seed=3),
                     strict=True))
    assert first == [again[it.sha256] for it in items]
    assert first[:60].count("val") == 15 and first[60:].count("val") == 10
    assert assign_splits(items, 0.25, seed=4) != first


def test_bad_val_fraction_is_a_config_error(tmp_path, workspace):
    with pytest.raises(ConfigError, match="val_fraction=1.5"):
        ingest(make_zip(tmp_path / "p.zip", class_files()), workspace, val_fraction=1.5)


def test_summary_reports_sizes_imbalance_and_warnings(tmp_path, workspace):
    files = class_files(classes=("big",), per_class=40)
    files.update({f"small/{i}.png": image_bytes(500 + i, mode="L") for i in range(5)})
    summary = ingest(make_zip(tmp_path / "s.zip", files), workspace).summary
    assert summary["imbalance_ratio"] == 8.0
    assert summary["image_sizes"]["width"] == {"min": 40, "max": 40, "mean": 40.0, "median": 40.0}
    codes = [w["code"] for w in summary["warnings"]]
    assert "small_class" in codes and "imbalance" in codes and "grayscale" not in codes


def test_all_grayscale_data_is_warned_about(tmp_path, workspace):
    files = {f"{c}/{i}.png": image_bytes(i + 10 * len(c), mode="L") for c in ("x", "yy") for i in range(3)}
    summary = ingest(make_zip(tmp_path / "g.zip", files), workspace).summary
    assert summary["grayscale_fraction"] == 1.0
    assert any(w["code"] == "grayscale" for w in summary["warnings"])


def test_manifest_records_original_size_hash_and_source(tmp_path, workspace):
    data = image_bytes(7, size=(700, 300))
    files = {**class_files(), "cats/wide.png": data}
    dataset = ingest(make_zip(tmp_path / "m.zip", files), workspace)
    entry = next(e for e in dataset.entries if e.source == "cats/wide.png")
    import hashlib

    assert (entry.width, entry.height, entry.sha256) == (700, 300, hashlib.sha256(data).hexdigest())
    from PIL import Image

    with Image.open(dataset.root / entry.file) as stored:
        assert stored.format == "JPEG" and stored.size == (512, 219)


@pytest.mark.parametrize(("files", "message"), [
    ({"cats/a.png": b"", "cats/b.png": b""}, "None of the image files can be used"),
    ({"notes.txt": b"x"}, "Found no image files"),
    (class_files(classes=("cats",)), r"Found 1 class \('cats'\); need at least 2"),
    ({**class_files(classes=("cats",)), "dogs/one.png": image_bytes(77), "dogs/bad.png": b"junk"},
     r"Class 'dogs' has 1 usable image\(s\) \(1 rejected\)"),
    ({**class_files(classes=("cats", "dogs")), "birds/a.png": b"", "birds/b.png": b"<html>"},
     r"Class 'birds' has 0 usable image\(s\) \(2 rejected\)"),
    ({"inner.zip": b"PK\x05\x06" + b"\0" * 18}, "only the archive 'inner.zip'"),
])
def test_unusable_uploads_are_errors_that_leave_nothing(tmp_path, workspace, files, message):
    before = listing(workspace.root)
    with pytest.raises(DatasetError, match=message):
        ingest(make_zip(tmp_path / "bad.zip", files), workspace)
    assert listing(workspace.root) == before


def test_interrupted_ingestion_leaves_nothing(tmp_path, workspace):
    zip_path = make_zip(tmp_path / "p.zip", class_files(per_class=30))
    before = listing(workspace.root)

    def interrupt(fraction, message):
        if fraction > 0.3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest(zip_path, workspace, progress=interrupt)
    assert listing(workspace.root) == before


def test_progress_reports_increasing_fractions_up_to_one(tmp_path, workspace):
    seen = []
    ingest(make_zip(tmp_path / "p.zip", class_files()), workspace, progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def test_same_zip_again_reuses_the_dataset(tmp_path, workspace):
    zip_path = make_zip(tmp_path / "p.zip", class_files())
    first = ingest(zip_path, workspace)
    before = listing(workspace.root)
    again = ingest(zip_path, workspace)
    assert again.id == first.id and listing(workspace.root) == before
    assert ingest(zip_path, workspace, seed=1).id != first.id


def test_same_bytes_under_another_name_reuse_the_dataset(tmp_path, workspace):
    import io

    data = make_zip(tmp_path / "p.zip", class_files()).read_bytes()
    first = ingest(io.BytesIO(data), workspace, name="pets.zip")
    again = ingest(io.BytesIO(data), workspace, name="copy of pets.zip")
    assert again.id == first.id and len(list(workspace.datasets_dir.iterdir())) == 1


def test_list_load_and_delete(tmp_path, workspace):
    a = ingest(make_zip(tmp_path / "a.zip", class_files()), workspace)
    b = ingest(make_zip(tmp_path / "b.zip", class_files(seed=5)), workspace)
    assert [d.id for d in list_datasets(workspace)] == [b.id, a.id]
    loaded = load_dataset(workspace, a.id)
    assert loaded.entries == a.entries and loaded.classes == a.classes
    assert len(loaded.paths("train")) == len(loaded.label_indices("train"))
    assert loaded.label_indices("train").dtype == np.int32
    delete_dataset(workspace, a.id)
    assert [d.id for d in list_datasets(workspace)] == [b.id]
    with pytest.raises(DatasetError, match=a.id):
        load_dataset(workspace, a.id)
    with pytest.raises(DatasetError, match="deleted already"):
        delete_dataset(workspace, a.id)
    with pytest.raises(DatasetError, match="not a dataset id"):
        load_dataset(workspace, "../etc")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "core", "ingest", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_prints_json_report(tmp_path):
    zip_path = make_zip(tmp_path / "p.zip", {**class_files(per_class=5), "cats/bad.png": b""})
    out = _cli(str(zip_path), "--workspace", str(tmp_path / "ws"), "--json", "--val-fraction", "0.4")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"dataset_id", "classes", "counts", "rejected", "duplicates", "warnings"}
    assert report["counts"]["val"] == {"cats": 2, "dogs": 2}
    assert report["rejected"] == [{"file": "cats/bad.png", "reason": "empty file (0 bytes)"}]


def test_cli_user_error_is_one_line_exit_2(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    out = _cli(str(tmp_path / "x.zip"), "--workspace", str(tmp_path / "ws"))
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
