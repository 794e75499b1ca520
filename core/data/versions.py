"""Dataset versions: relabel or exclude images into a NEW dataset, leaving the original untouched.

A version is an ordinary dataset folder (``workspace/datasets/<id>/``) whose ``dataset.json`` names
its ``parent_id`` and holds a ``changes`` record (what was relabelled or excluded, and a note). Its
images are hard links to the parent's (copies where links are not possible), its manifest keeps the
parent's rows in order except the changed ones, and its summary is recomputed. The same changes to
the same parent give the same version id, so asking twice reuses the first version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter

from core.config import TrainConfig
from core.data.datasets import MANIFEST_COLUMNS, META, SUMMARY, Dataset, load_dataset, write_dataset_files
from core.data.splits import build_summary
from core.errors import DatasetError
from core.spaces import check_dataset_room
from core.workspace import Workspace, read_json


def create_version(workspace: Workspace, dataset_id: str, relabel: dict[str, str] | None = None,
                   exclude: set[str] | frozenset[str] | None = None, note: str = "") -> Dataset:
    """Make a new dataset from ``dataset_id`` with some images relabelled and some left out.

    Args:
        workspace: Holds both datasets.
        dataset_id: The source (parent) dataset; it is not modified.
        relabel: ``{manifest file: new label}``; relabelling to the current label is no change.
        exclude: Manifest files to leave out.
        note: Free text stored with the changes.

    Returns:
        The new dataset (``parent_id`` = ``dataset_id``); an existing one when the same changes were made before.

    Raises:
        DatasetError: unknown files, nothing to change, a file both relabelled and excluded, an empty label, or a
            result that breaks the dataset rules (at least 2 classes, 2 images per class, training images in every
            class, validation images kept).
    """
    parent = load_dataset(workspace, dataset_id)
    relabel, exclude = _check_request(parent, dict(relabel or {}), set(exclude or ()))
    records, changes = _apply(parent, relabel, exclude, note)
    _check_rules(parent, records)
    version_id = _version_id(parent, changes)
    if (workspace.datasets_dir / version_id / META).exists():
        return load_dataset(workspace, version_id)
    check_dataset_room(workspace)
    staging = workspace.staging_dir(f"version-{version_id}-")
    try:
        _link_images(parent, records, staging)
        summary = _summary(parent, records, staging)
        name = f"{_root_name(workspace, parent)} v{len(list_versions(workspace, parent.id)) + 1}"
        write_dataset_files(staging, version_id, name, records, summary, parent.id,
                            changes={**changes, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        try:
            os.rename(staging, workspace.datasets_dir / version_id)
        except OSError:
            if not (workspace.datasets_dir / version_id / META).exists():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # the same version was made by another session meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_dataset(workspace, version_id)


def _check_request(parent: Dataset, relabel: dict[str, str], exclude: set[str]) -> tuple[dict, set]:
    known = {entry.file for entry in parent.entries}
    unknown = sorted((set(relabel) | exclude) - known)
    if unknown:
        raise DatasetError(f"{len(unknown)} file(s) are not in dataset {parent.id}, e.g. '{unknown[0]}'. "
                           f"Pick images of this dataset (manifest 'file' values such as 'images/....jpg').")
    both = sorted(set(relabel) & exclude)
    if both:
        raise DatasetError(f"'{both[0]}' is both relabelled and excluded; choose one of the two for each image.")
    cleaned = {}
    current = {entry.file: entry.label for entry in parent.entries}
    for file, label in relabel.items():
        label = str(label).strip()
        if not label or "/" in label or "\\" in label:
            raise DatasetError(f"New label {label!r} for '{file}' is not usable; give a non-empty class name "
                               f"without slashes.")
        if label != current[file]:
            cleaned[file] = label
    if not cleaned and not exclude:
        raise DatasetError("Nothing to change: select images and give them another label or exclude them.")
    return cleaned, exclude


def _apply(parent: Dataset, relabel: dict, exclude: set, note: str) -> tuple[list[dict], dict]:
    records, relabelled, excluded = [], [], []
    for entry in parent.entries:
        if entry.file in exclude:
            excluded.append({"file": entry.file, "source": entry.source, "label": entry.label, "split": entry.split})
            continue
        record = {column: getattr(entry, column) for column in MANIFEST_COLUMNS}
        if entry.file in relabel:
            record["label"] = relabel[entry.file]
            relabelled.append({"file": entry.file, "source": entry.source, "from": entry.label,
                               "to": relabel[entry.file], "split": entry.split})
        records.append(record)
    return records, {"parent_id": parent.id, "note": str(note), "relabelled": relabelled, "excluded": excluded}


def _check_rules(parent: Dataset, records: list[dict]) -> None:
    totals = Counter(record["label"] for record in records)
    train = Counter(record["label"] for record in records if record["split"] == "train")
    if len(totals) < 2:
        raise DatasetError(f"The new version would have {len(totals)} class(es) ({', '.join(sorted(totals))}); "
                           f"a dataset needs at least 2. Exclude or relabel fewer images.")
    for label, count in sorted(totals.items()):
        if count < 2:
            raise DatasetError(f"Class '{label}' would have {count} image; each class needs at least 2. "
                               f"Relabel more images into it, or none.")
        if not train[label]:
            raise DatasetError(f"Class '{label}' would have no training images; keep or relabel at least one of "
                               f"its training images.")
    if "val" in parent.splits and not any(record["split"] == "val" for record in records):
        raise DatasetError("The new version would have no validation images; keep some validation images.")


def _version_id(parent: Dataset, changes: dict) -> str:
    text = json.dumps({key: changes[key] for key in ("parent_id", "relabelled", "excluded")}, sort_keys=True)
    slug = re.sub(r"[^a-z0-9]+", "-", parent.name.lower()).strip("-")[:40] or "dataset"
    return f"{slug}-v-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _link_images(parent: Dataset, records: list[dict], staging) -> None:
    (staging / "images").mkdir(parents=True, exist_ok=True)
    for record in records:
        source, target = parent.root / record["file"], staging / record["file"]
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(source, target)


def _summary(parent: Dataset, records: list[dict], folder) -> dict:
    from PIL import Image

    from core.data.images import is_grayscale

    enriched = []
    for record in records:
        with Image.open(folder / record["file"]) as image:
            enriched.append({**record, "gray": is_grayscale(image.convert("RGB"))})
    old = parent.summary
    summary = build_summary(enriched, layout=old.get("layout", "version"), skipped=old.get("skipped", []),
                            rejected=old.get("rejected", []), val_fraction=old.get("val_fraction") or 0.2,
                            seed=old.get("seed", 0), generated_split=bool(old.get("generated_split")),
                            test_carved=bool(old.get("test_carved")))
    summary.update(name=old.get("name", parent.name), source=old.get("source", parent.name), parent_id=parent.id)
    summary["conversions"] = old.get("conversions")  # made at ingestion, as counted for the parent
    return summary


def _meta(workspace: Workspace, dataset_id: str) -> dict:
    return read_json(workspace.datasets_dir / dataset_id / META, default={}) or {}


def _root_id(workspace: Workspace, dataset_id: str) -> str:
    seen, current = set(), dataset_id
    while current not in seen:
        seen.add(current)
        parent = _meta(workspace, current).get("parent_id")
        if not parent or not (workspace.datasets_dir / parent / META).exists():
            return current
        current = parent
    return current


def _root_name(workspace: Workspace, dataset: Dataset) -> str:
    return _meta(workspace, _root_id(workspace, dataset.id)).get("name", dataset.name)


def describe_changes(changes: dict | None) -> str:
    """The changes of a version in a few plain words, e.g. ``relabelled 2 (ant -> bee 2), excluded 1``."""
    if not changes:
        return "original upload"
    parts = []
    relabelled = changes.get("relabelled", [])
    if relabelled:
        moves = Counter(f"{item['from']} -> {item['to']}" for item in relabelled)
        parts.append(f"relabelled {len(relabelled)} (" + ", ".join(f"{m} {n}" for m, n in sorted(moves.items()))
                     + ")")
    if changes.get("excluded"):
        parts.append(f"excluded {len(changes['excluded'])}")
    if changes.get("note"):
        parts.append(f"note: {changes['note']}")
    return ", ".join(parts) or "no change"


def list_versions(workspace: Workspace, dataset_id: str) -> list[dict]:
    """The family of ``dataset_id`` (its original upload and every version made from it), oldest first.

    Returns:
        One dict per dataset: ``id, name, parent_id, created_at, images, classes, changes`` (the record, or
        None for the original) and ``description`` (``describe_changes``).
    """
    root = _root_id(workspace, dataset_id)
    family = []
    for folder in sorted(workspace.datasets_dir.iterdir()) if workspace.datasets_dir.is_dir() else []:
        meta = _meta(workspace, folder.name)
        if meta and _root_id(workspace, folder.name) == root:
            summary = read_json(folder / SUMMARY, default={}) or {}
            family.append({"id": folder.name, "name": meta.get("name", folder.name),
                           "parent_id": meta.get("parent_id"), "created_at": meta.get("created_at", ""),
                           "created_ts": meta.get("created_ts", 0.0), "images": summary.get("total_images"),
                           "classes": meta.get("classes", []), "changes": meta.get("changes"),
                           "description": describe_changes(meta.get("changes"))})
    family.sort(key=lambda item: (item["parent_id"] is not None, item["created_ts"], item["id"]))
    return family


def repeat_run_config(record: dict, new_dataset_id: str) -> TrainConfig:
    """The config of run ``record`` (a ``run.json`` dict) pointed at ``new_dataset_id``, ready to submit."""
    return TrainConfig.from_dict({**(record.get("config") or {}), "dataset_id": new_dataset_id})
