"""Which file of an upload belongs to which class and split.

Accepted layouts (checked in this order):

1. ``labels.csv`` with columns ``filename,label`` and optionally ``split`` beside the images
   (file names relative to the CSV's folder). Images it does not list are skipped and reported.
2. Split folders at the top: ``train/`` plus any of ``val/``, ``validation/``, ``valid/``,
   ``test/``, each holding class folders.
3. Class folders at the top: ``cats/``, ``dogs/`` ...

Layouts 2 and 3 may be wrapped in any number of single root folders (what zipping a folder
gives). Subfolders inside a class folder belong to that class.

Junk is skipped and reported, never fatal: ``__MACOSX/``, hidden files and folders (``.*``,
``._*``), ``Thumbs.db``, ``desktop.ini``, files without an image extension and nested archives
(a zip inside the zip is *not* extracted: it is reported as skipped, and when nothing else is
found the error says to extract it).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from core.data.names import clean_text
from core.errors import DatasetError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff"}
)
ARCHIVE_EXTENSIONS = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar"})
SPLIT_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "icon\r"})
LABELS_CSV = "labels.csv"


@dataclass(frozen=True)
class LabelledFile:
    """An image file of the upload with its class and, when the upload says so, its split."""

    name: str
    label: str
    split: str | None


@dataclass
class Layout:
    """What :func:`detect_layout` found."""

    kind: str  # "labels_csv" | "split_folders" | "class_folders"
    files: list[LabelledFile]
    skipped: list[dict] = field(default_factory=list)   # junk: {"file", "reason"}
    rejected: list[dict] = field(default_factory=list)  # unusable: {"file", "reason"}
    archives: list[str] = field(default_factory=list)   # nested archives that were skipped


def junk_reason(name: str) -> str | None:
    """Why ``name`` is junk to skip, or ``None`` for a candidate image (or labels.csv)."""
    path = PurePosixPath(name)
    if "__MACOSX" in path.parts:
        return "macOS metadata folder (__MACOSX)"
    if any(part.startswith(".") for part in path.parts):
        return "hidden file or folder"
    if path.name.lower() in SYSTEM_FILES:
        return "system file"
    suffix = path.suffix.lower()
    if suffix in ARCHIVE_EXTENSIONS:
        return "archive inside the archive (not extracted: extract it and upload its content instead)"
    if path.name.lower() == LABELS_CSV or suffix in IMAGE_EXTENSIONS:
        return None
    return f"not an image file (extension '{suffix or 'none'}')"


def detect_layout(names: list[str], read: Callable[[str], bytes]) -> Layout:
    """Assign every candidate image to a class and split.

    Args:
        names: paths of every file of the upload, ``/``-separated.
        read: returns the bytes of one file (used for ``labels.csv``).

    Returns:
        The layout with labelled files, skipped junk and rejected files.

    Raises:
        DatasetError: split folders mixed with other folders, or a malformed ``labels.csv``.
    """
    skipped, candidates, archives = [], [], []
    for name in names:
        reason = junk_reason(name)
        if reason is None:
            candidates.append(name)
        else:
            skipped.append({"file": clean_text(name), "reason": reason})
            if PurePosixPath(name).suffix.lower() in ARCHIVE_EXTENSIONS and "__MACOSX" not in name:
                archives.append(clean_text(name))
    csvs = sorted((n for n in candidates if PurePosixPath(n).name.lower() == LABELS_CSV),
                  key=lambda n: (n.count("/"), n))
    images = [n for n in candidates if PurePosixPath(n).name.lower() != LABELS_CSV]
    if csvs:
        layout = _from_labels_csv(csvs[0], read(csvs[0]), images)
        skipped += [{"file": clean_text(n), "reason": "another labels.csv (only the top one is used)"}
                    for n in csvs[1:]]
    else:
        layout = _from_folders(images)
    layout.skipped = skipped + layout.skipped
    layout.archives = archives
    return layout


def _strip_wrappers(parts: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Drop single root folders; loose files beside the root folder stay loose (and get rejected)."""
    while True:
        nested = [p for p in parts.values() if len(p) > 1]
        tops = {p[0] for p in nested}
        if (not nested or len(tops) != 1 or next(iter(tops)).lower() in SPLIT_NAMES
                or all(len(p) < 3 for p in nested)):
            return parts
        parts = {name: p[1:] if len(p) > 1 else p for name, p in parts.items()}


def _from_folders(images: list[str]) -> Layout:
    parts = _strip_wrappers({name: PurePosixPath(name).parts for name in images})
    tops = {p[0] for p in parts.values() if len(p) > 1}
    split_tops = {t for t in tops if t.lower() in SPLIT_NAMES}
    if any(SPLIT_NAMES[t.lower()] == "train" for t in split_tops):
        others = sorted(tops - split_tops)
        if others:
            raise DatasetError(
                f"The zip mixes split folders ({', '.join(sorted(split_tops))}) with other folders "
                f"({', '.join(clean_text(o) for o in others[:5])}). Put every class folder inside "
                f"train/ (and val/ or test/), or remove the split folders."
            )
        return _labelled(parts, depth=3, kind="split_folders")
    return _labelled(parts, depth=2, kind="class_folders")


def _labelled(parts: dict[str, tuple[str, ...]], depth: int, kind: str) -> Layout:
    files, rejected = [], []
    for name, p in parts.items():
        if len(p) < depth:
            where = "a class folder inside the split folder" if depth == 3 else "a class folder"
            rejected.append({"file": clean_text(name), "reason": f"not inside {where}"})
            continue
        split = SPLIT_NAMES[p[0].lower()] if depth == 3 else None
        files.append(LabelledFile(name, clean_text(p[depth - 2]).strip(), split))
    return Layout(kind, files, rejected=rejected)


def _from_labels_csv(csv_name: str, data: bytes, images: list[str]) -> Layout:
    folder = PurePosixPath(csv_name).parent
    shown = clean_text(csv_name)
    rows = _read_csv_rows(shown, data)
    by_name = {str(PurePosixPath(n).relative_to(folder)) if _is_under(n, folder) else None: n for n in images}
    by_name.pop(None, None)
    files, rejected, listed = [], [], set()
    for number, row in rows:
        relative = str(PurePosixPath(row["filename"].strip().replace("\\", "/")))
        label = (row.get("label") or "").strip()
        split_value = (row.get("split") or "").strip()
        if not label:
            rejected.append({"file": relative, "reason": f"{shown} line {number}: empty label"})
            continue
        split = None
        if split_value:
            split = SPLIT_NAMES.get(split_value.lower())
            if split is None:
                raise DatasetError(
                    f"{shown} line {number}: split '{split_value}' is not one of train, val, test. "
                    f"Fix the split column or leave it empty to let the app split the data."
                )
        name = by_name.get(relative)
        if name is None:
            rejected.append({"file": relative, "reason": f"listed in {shown} but not found in the upload"})
            continue
        listed.add(name)
        files.append(LabelledFile(name, label, split))
    skipped = [{"file": clean_text(n), "reason": f"not listed in {shown}"} for n in images if n not in listed]
    return Layout("labels_csv", files, skipped=skipped, rejected=rejected)


def _is_under(name: str, folder: PurePosixPath) -> bool:
    return str(folder) == "." or PurePosixPath(name).is_relative_to(folder)


def _read_csv_rows(shown: str, data: bytes) -> list[tuple[int, dict]]:
    text = data.decode("utf-8-sig", "replace")
    reader = csv.DictReader(io.StringIO(text))
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    if "filename" not in columns or "label" not in columns:
        raise DatasetError(
            f"{shown} has columns {list(columns)}; expected a header 'filename,label' (and optionally "
            f"',split'). Add that header line to the CSV."
        )
    rows = []
    for number, row in enumerate(reader, start=2):
        rows.append((number, {key: row.get(original) or "" for key, original in columns.items()}))
    return rows
