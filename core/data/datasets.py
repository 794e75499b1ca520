"""Datasets in the workspace: ingest an upload, then load, list and delete what was ingested.

A dataset lives in ``workspace/datasets/<id>/``: ``images/`` (normalized RGB JPEG copies, one per
manifest row, so ``file`` is unique), ``manifest.csv`` (file, label, split, sha256, width, height,
source), ``summary.json`` (see :func:`core.data.splits.build_summary`) and ``dataset.json`` (id,
name, created_at, classes, parent_id). It is built in a staging folder under ``tmp/`` and
renamed into place only when complete, so a failed or interrupted ingestion leaves nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import check_seed
from core.data.images import normalize_files
from core.data.ingest_limits import IngestLimits
from core.data.layout import Layout, detect_layout
from core.data.names import clean_text
from core.data.sources import open_source
from core.data.splits import (
    SPLIT_ORDER,
    SplitItem,
    assign_splits,
    build_summary,
    check_val_fraction,
    should_carve_test,
)
from core.errors import DatasetError
from core.spaces import check_dataset_room
from core.workspace import Workspace, atomic_write_bytes, atomic_write_json, read_json

__all__ = [
    "Dataset", "IngestLimits", "ManifestEntry", "delete_dataset", "ingest",
    "list_datasets", "load_dataset",
]

MANIFEST = "manifest.csv"
SUMMARY = "summary.json"
META = "dataset.json"
MANIFEST_COLUMNS = ("file", "label", "split", "sha256", "width", "height", "source", "phash")
NEAR_DUPLICATE_BITS = 4  # core.data.near_duplicates.HASH_ONLY_BITS: pictures this close share a split
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")


@dataclass(frozen=True)
class ManifestEntry:
    """One image of a dataset."""

    file: str      # normalized copy, relative to Dataset.root, e.g. "images/000123.jpg"; unique
    label: str
    split: str     # "train" | "val" | "test"
    sha256: str    # hash of the ORIGINAL bytes
    width: int     # original width / height (after EXIF orientation)
    height: int
    source: str    # original entry name in the zip/folder
    phash: str = ""  # perceptual hash of the normalized copy (core.data.near_duplicates); "" in older datasets


@dataclass(frozen=True)
class Dataset:
    """An ingested dataset (read-only view of its folder)."""

    id: str
    root: Path
    name: str
    classes: tuple[str, ...]
    entries: tuple[ManifestEntry, ...]
    summary: dict
    parent_id: str | None = None

    def split_entries(self, split: str) -> list[ManifestEntry]:
        """Entries of one split, in manifest order."""
        return [entry for entry in self.entries if entry.split == split]

    def paths(self, split: str) -> list[Path]:
        """Absolute paths of the normalized copies of one split."""
        return [self.root / entry.file for entry in self.split_entries(split)]

    def content_groups(self, *splits: str) -> list[str]:
        """A group key per image of the splits (in order), shared by identical and near-identical images as the
        split assignment groups them, so folds and holdouts never put the same picture on both sides."""
        entries = [entry for split in splits for entry in self.split_entries(split)]
        return near_duplicate_keys([{"phash": e.phash, "sha256": e.sha256} for e in entries])

    def label_indices(self, split: str) -> np.ndarray:
        """int32 class indices (into ``classes``) of one split, aligned with :meth:`paths`."""
        index = {name: i for i, name in enumerate(self.classes)}
        return np.array([index[entry.label] for entry in self.split_entries(split)], dtype=np.int32)

    @property
    def splits(self) -> tuple[str, ...]:
        """Splits that hold images, in the order train, val, test."""
        present = {entry.split for entry in self.entries}
        return tuple(split for split in SPLIT_ORDER if split in present)


def ingest(source, workspace: Workspace, *, val_fraction: float = 0.2, seed: int = 0,
           limits: IngestLimits | None = None, progress=None, name: str | None = None) -> Dataset:
    """Check, decode and store an upload as a dataset; reuse it if it was ingested before.

    Args:
        source: path of a zip or a folder, or a binary file object holding a zip (e.g. a
            Streamlit ``UploadedFile``; copied in chunks to the workspace ``tmp/`` first).
        workspace: where the dataset is stored.
        val_fraction: share of each class put in validation when the upload has no val split.
        seed: seed of the generated split.
        limits: safety limits; default :meth:`IngestLimits.from_env`.
        progress: optional ``progress(fraction: float, message: str)`` callback.
        name: display name; default the zip or folder name.

    Returns:
        The dataset. Its id depends only on the content, split parameters and limits.

    Raises:
        DatasetError: the upload cannot be used (the message says why and how to fix it).
        ConfigError: ``val_fraction`` or ``seed`` out of range.
    """
    val_fraction = check_val_fraction(val_fraction)
    check_seed(seed)
    limits = limits or IngestLimits.from_env()
    report = progress or (lambda fraction, message: None)
    report(0.0, "Checking the upload")
    with open_source(source, workspace.tmp_dir, limits) as opened:
        dataset_id = _make_id(name or opened.name, opened.fingerprint, val_fraction, seed, limits)
        existing = _find_same_content(workspace, dataset_id)
        if existing:
            report(1.0, "This upload was ingested before: reusing it")
            return load_dataset(workspace, existing)
        check_dataset_room(workspace)
        staging = workspace.staging_dir(f"ingest-{dataset_id}-")
        try:
            records, summary = _build(opened.source, staging, val_fraction, seed, limits, report)
            summary.update(name=name or opened.name, source=opened.name)
            write_dataset_files(staging, dataset_id, name or opened.name, records, summary)
            return _move_into_place(workspace, staging, dataset_id, report)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _make_id(name: str, fingerprint: str, val_fraction: float, seed: int, limits: IngestLimits) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", Path(name).stem.lower()).strip("-")[:40] or "dataset"
    params = f"{fingerprint}|{val_fraction!r}|{int(seed)}|{limits.max_pixels}|{limits.min_side}|" \
             f"{limits.max_side}|{limits.max_file_bytes}|v2"
    return f"{slug}-{hashlib.sha256(params.encode()).hexdigest()[:10]}"


def _build(source, staging: Path, val_fraction: float, seed: int, limits: IngestLimits, report):
    (staging / "images").mkdir()
    layout = detect_layout([item.name for item in source.files()], source.read)
    layout.skipped += [{"file": clean_text(link), "reason": "symbolic link (not followed)"}
                       for link in getattr(source, "links", [])]
    results = normalize_files(source, [item.name for item in layout.files], staging / "images", limits, report)
    records, rejected = [], list(layout.rejected)
    for index, (item, result) in enumerate(zip(layout.files, results, strict=True)):
        if "reason" in result:
            rejected.append({"file": clean_text(item.name), "reason": result["reason"]})
        else:
            records.append({**result, "file": f"images/{index:06d}.jpg", "label": item.label, "split": item.split,
                            "source": clean_text(item.name)})
    _check_classes(layout, records, rejected)
    records.sort(key=lambda record: (record["label"], record["source"]))
    generated = not any(record["split"] == "val" for record in records)
    items = [SplitItem(r["label"], r["sha256"], r["split"], group) for r, group in zip(
        records, near_duplicate_keys(records), strict=True)]
    test_carved = should_carve_test(items)
    for record, split in zip(records, assign_splits(items, val_fraction, seed), strict=True):
        record["split"] = split
    report(0.97, "Writing the manifest")
    summary = build_summary(records, layout=layout.kind, skipped=layout.skipped, rejected=rejected,
                            val_fraction=val_fraction, seed=seed, generated_split=generated,
                            test_carved=test_carved)
    summary["max_side"] = limits.max_side  # prediction re-creates stored copies with the same cap
    summary["conversions"] = count_conversions(records)
    return records, summary


def near_duplicate_keys(records: list[dict]) -> list[str]:
    """A group key per record: the smallest sha256 among the images that show the same picture (by hash)."""
    from core.data.near_duplicates import group_ids, hamming_pairs, hash_array

    first, second, _ = hamming_pairs(hash_array([r.get("phash", "") for r in records]), NEAR_DUPLICATE_BITS)
    roots = group_ids(len(records), zip(first.tolist(), second.tolist(), strict=True))
    smallest: dict[int, str] = {}
    for record, root in zip(records, roots, strict=True):
        smallest[root] = min(smallest.get(root, record["sha256"]), record["sha256"])
    return [smallest[root] for root in roots]


def count_conversions(records: list[dict]) -> dict:
    """``{"exif_rotated": n, "colour_modes": {stored mode: n}}`` of what ingestion turned upright or into RGB."""
    modes: dict[str, int] = {}
    for record in records:
        if record.get("mode", "RGB") != "RGB":
            modes[record["mode"]] = modes.get(record["mode"], 0) + 1
    return {"exif_rotated": sum(bool(r.get("exif_rotated")) for r in records),
            "colour_modes": dict(sorted(modes.items()))}


def _check_classes(layout: Layout, records: list[dict], rejected: list[dict]) -> None:
    if not records:
        if layout.archives and not layout.files:
            raise DatasetError(
                f"Found no images, only the archive '{layout.archives[0]}' inside the zip; archives inside "
                f"the zip are not extracted. Extract it and upload its content as the zip.")
        if rejected:
            first = rejected[0]
            raise DatasetError(
                f"None of the image files can be used ({len(rejected)} rejected), e.g. '{first['file']}': "
                f"{first['reason']}. Put readable images in one folder per class and zip them.")
        raise DatasetError(
            f"Found no image files (.jpg, .png, .gif, .bmp, .webp, .tif) in the upload ({len(layout.skipped)} "
            f"other files skipped). Put the images in one folder per class and zip them.")
    counts: dict[str, int] = {item.label: 0 for item in layout.files}  # classes whose images all failed count
    for record in records:
        counts[record["label"]] = counts.get(record["label"], 0) + 1
    if len(counts) < 2:
        only = next(iter(counts))
        raise DatasetError(
            f"Found 1 class ('{only}'); need at least 2. Put each class in its own top-level folder of "
            f"the zip (e.g. cats/ and dogs/), or list them in labels.csv.")
    for label, count in sorted(counts.items()):
        if count < 2:
            lost = sum(1 for r in rejected if f"/{label}/" in f"/{r['file']}")
            raise DatasetError(
                f"Class '{label}' has {count} usable image(s) ({lost} rejected); each class needs at least 2. "
                f"Add images to '{label}' or remove it.")


def _find_same_content(workspace: Workspace, dataset_id: str) -> str | None:
    """Id of a dataset built from the same bytes and parameters, whatever name it was given."""
    digest = dataset_id.rsplit("-", 1)[1]
    for meta in sorted(workspace.datasets_dir.glob(f"*-{digest}/{META}")):
        return meta.parent.name
    return None


def write_dataset_files(folder: Path, dataset_id: str, name: str, records: list[dict], summary: dict,
                        parent_id: str | None = None, **meta) -> None:
    """Write ``manifest.csv``, ``summary.json`` and ``dataset.json`` (with any extra ``meta``) into ``folder``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_bytes(folder / MANIFEST, buffer.getvalue().encode("utf-8"))
    atomic_write_json(folder / SUMMARY, summary)
    atomic_write_json(folder / META, {
        "id": dataset_id, "name": name, "classes": summary["classes"], "parent_id": parent_id,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "created_ts": time.time(), **meta,
    })


def _move_into_place(workspace: Workspace, staging: Path, dataset_id: str, report) -> Dataset:
    target = workspace.datasets_dir / dataset_id
    try:
        os.rename(staging, target)
    except OSError:
        if not (target / META).exists():
            raise
        shutil.rmtree(staging, ignore_errors=True)  # another session finished the same upload first
    report(1.0, "Done")
    return load_dataset(workspace, dataset_id)


def _dataset_dir(workspace: Workspace, dataset_id: str) -> Path:
    if not isinstance(dataset_id, str) or not _ID_PATTERN.fullmatch(dataset_id):
        raise DatasetError(f"'{dataset_id}' is not a dataset id. Pick a dataset from the Data page list.")
    return workspace.datasets_dir / dataset_id


def load_dataset(workspace: Workspace, dataset_id: str) -> Dataset:
    """Load an ingested dataset by id.

    Raises:
        DatasetError: naming the id, when no complete dataset has that id.
    """
    root = _dataset_dir(workspace, dataset_id)
    meta = read_json(root / META)
    summary = read_json(root / SUMMARY)
    try:
        text = (root / MANIFEST).read_text(encoding="utf-8")
    except OSError:
        text = None
    if meta is None or summary is None or text is None:
        raise DatasetError(
            f"No dataset '{dataset_id}' in {workspace.datasets_dir}. Ingest the zip again on the Data page "
            f"or with 'python -m core ingest PATH'."
        )
    entries = tuple(
        ManifestEntry(row["file"], row["label"], row["split"], row["sha256"], int(row["width"]),
                      int(row["height"]), row["source"], row.get("phash") or "")
        for row in csv.DictReader(io.StringIO(text))
    )
    return Dataset(id=dataset_id, root=root, name=meta.get("name", dataset_id),
                   classes=tuple(meta.get("classes") or summary["classes"]), entries=entries,
                   summary=summary, parent_id=meta.get("parent_id"))


def list_datasets(workspace: Workspace) -> list[Dataset]:
    """Every complete dataset of the workspace, newest first."""
    found = []
    for folder in workspace.datasets_dir.iterdir() if workspace.datasets_dir.is_dir() else []:
        meta = read_json(folder / META)
        if not meta:
            continue
        try:
            found.append((meta.get("created_ts", 0.0), load_dataset(workspace, folder.name)))
        except DatasetError:
            continue
    found.sort(key=lambda pair: (-pair[0], pair[1].id))
    return [dataset for _, dataset in found]


def delete_dataset(workspace: Workspace, dataset_id: str) -> None:
    """Delete a dataset folder (moved aside first, so readers never see half of it) and its feature cache.

    Raises:
        DatasetError: when there is no such dataset (e.g. another session deleted it first).
    """
    root = _dataset_dir(workspace, dataset_id)
    trash = workspace.tmp_dir / f"deleted-{dataset_id}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(root, trash)
    except FileNotFoundError:
        raise DatasetError(f"No dataset '{dataset_id}' to delete; it may have been deleted already.") from None
    shutil.rmtree(trash, ignore_errors=True)
    delete_features_for_dataset(workspace, dataset_id)


def delete_features_for_dataset(workspace: Workspace, dataset_id: str) -> int:
    """Remove the embedding-cache entries (``core.models.features``) built from ``dataset_id``; returns how many."""
    removed = 0
    for folder in Path(workspace.features_dir).iterdir():
        meta = read_json(folder / "meta.json", default={})
        if meta.get("dataset_id") == dataset_id:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
