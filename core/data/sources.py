"""Safe reading of what a user uploads: a zip (path or file object) or a folder.

Every zip is checked from its central directory before a single byte is extracted (``core.data.ingest_limits``: entry
count, ``..`` and absolute paths, symbolic links, encryption, folder depth, total uncompressed size and compression
ratio). Entries are then read one at a time, each capped at its declared size, so memory stays bounded however
large the archive is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.data.ingest_limits import IngestLimits, check_entry, check_overall_ratio, format_mib
from core.data.names import check_entry_name, clean_text, entry_name, upload_name
from core.errors import DatasetError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class SourceFile:
    """One file of the upload: its path inside the archive or folder and its size."""

    name: str
    size: int


class ZipSource:
    """A validated zip archive whose files can be read one at a time."""

    def __init__(self, path: Path, limits: IngestLimits):
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        except UnicodeDecodeError:
            raise DatasetError(
                f"'{self.path.name}' marks its file names as UTF-8 but they are not valid UTF-8. Re-create "
                f"the zip with a current zip tool."
            ) from None
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise DatasetError(
                f"'{self.path.name}' is not a readable zip file ({exc}). Upload a .zip archive; if it is "
                f"one, it may be truncated: create and upload it again."
            ) from None
        if len(infos) > limits.max_entries:
            self.close()
            raise DatasetError(
                f"The zip holds {len(infos):,} entries; the limit is {limits.max_entries:,} "
                f"(TRANSFER_STUDIO_MAX_ENTRIES). Split the dataset or raise the limit."
            )
        total = 0
        self._infos: dict[str, zipfile.ZipInfo] = {}
        try:
            for info in infos:
                name = entry_name(info)
                check_entry_name(name, limits)
                check_entry(info, limits)
                total += info.file_size
                if total > limits.max_total_bytes:
                    raise DatasetError(
                        f"The zip expands to more than {format_mib(limits.max_total_bytes)} (reached at entry "
                        f"'{clean_text(name)}'); the limit is TRANSFER_STUDIO_MAX_TOTAL_BYTES. Upload a "
                        f"smaller dataset or raise the limit."
                    )
                if not info.is_dir():
                    self._infos[name] = info
            check_overall_ratio(infos, total, limits)
        except DatasetError:
            self.close()
            raise
        self.limits = limits

    def files(self) -> list[SourceFile]:
        """Every file entry (folders left out), in archive order."""
        return [SourceFile(name, info.file_size) for name, info in self._infos.items()]

    def read(self, name: str) -> bytes:
        """The bytes of one entry, refusing more than its declared size."""
        info = self._infos[name]
        with self._zip.open(info) as handle:
            data = handle.read(info.file_size + 1)
        if len(data) != info.file_size:
            raise zipfile.BadZipFile(f"size mismatch in {name}")
        return data

    def close(self) -> None:
        """Close the archive."""
        self._zip.close()


class FolderSource:
    """A folder on the server read like an archive. Symbolic links are never followed."""

    def __init__(self, path: Path, limits: IngestLimits):
        self.path = Path(path)
        self.limits = limits
        self.links: list[str] = []
        self._files: dict[str, int] = {}
        for current, dirs, names in os.walk(self.path, followlinks=False):
            for name in sorted(names) + [d for d in dirs if os.path.islink(os.path.join(current, d))]:
                full = Path(current, name)
                relative = full.relative_to(self.path).as_posix()
                check_entry_name(relative, limits)
                if full.is_symlink():
                    self.links.append(relative)
                    continue
                self._files[relative] = full.stat().st_size
                if len(self._files) > limits.max_entries:
                    raise DatasetError(
                        f"The folder holds more than {limits.max_entries:,} files; the limit is "
                        f"TRANSFER_STUDIO_MAX_ENTRIES. Split the dataset or raise the limit."
                    )
            dirs.sort()

    def files(self) -> list[SourceFile]:
        """Every regular file, sorted by path."""
        return [SourceFile(name, size) for name, size in sorted(self._files.items())]

    def read(self, name: str) -> bytes:
        """The bytes of one file."""
        return (self.path / name).read_bytes()

    def close(self) -> None:
        """Nothing to release for a folder."""


def fingerprint_file(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fingerprint_folder(source: FolderSource) -> str:
    """sha256 over the relative path and the content of every file of a folder."""
    digest = hashlib.sha256()
    for item in source.files():
        digest.update(clean_text(item.name).encode("utf-8") + b"\0")
        digest.update(fingerprint_file(source.path / item.name).encode("ascii"))
    return digest.hexdigest()


def spool_upload(fileobj, directory: Path, name: str | None = None) -> Path:
    """Copy a binary file object (e.g. a Streamlit upload) to a temporary file in chunks.

    The copy keeps the name the user gave the file (in a private folder of its own), so every message that
    names the file names the user's file, never a server-side temporary name.

    Args:
        fileobj: object with ``read(n)``; rewound first when it supports ``seek``.
        directory: where the temporary folder goes (the workspace ``tmp/``).
        name: The user's name of the file; default its ``.name``, else ``upload.zip``.

    Returns:
        Path of the copy; the caller removes it with ``discard_spooled``.
    """
    if hasattr(fileobj, "seek"):
        fileobj.seek(0)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=directory))
    path = folder / upload_name(name or getattr(fileobj, "name", None))
    try:
        with open(path, "wb") as handle:
            shutil.copyfileobj(fileobj, handle, _CHUNK)
    except BaseException:
        discard_spooled(path)
        raise
    return path


def discard_spooled(path: Path) -> None:
    """Remove a copy made by ``spool_upload`` and its private folder."""
    shutil.rmtree(Path(path).parent, ignore_errors=True)


@dataclass
class OpenedSource:
    """An upload opened for reading: the source, its display name and a content fingerprint."""

    source: ZipSource | FolderSource
    name: str
    fingerprint: str


@contextlib.contextmanager
def open_source(source, tmp_dir: Path, limits: IngestLimits) -> Iterator[OpenedSource]:
    """Open a zip path, a folder path or a binary file object holding a zip.

    A file object is spooled to ``tmp_dir`` and the copy deleted on exit.

    Raises:
        DatasetError: the path does not exist, or the zip fails a safety check.
    """
    spooled = None
    try:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source).expanduser()
            name = path.name
            if not path.exists():
                raise DatasetError(f"'{clean_text(str(source))}' does not exist. Give the path of a zip file "
                                   f"or a folder of class folders.")
        elif hasattr(source, "read"):
            name = upload_name(getattr(source, "name", None))
            path = spooled = spool_upload(source, tmp_dir, name)
        else:
            raise DatasetError(f"Cannot ingest a {type(source).__name__}; give a zip path, a folder path "
                               f"or an uploaded zip file.")
        if path.is_dir():
            opened = FolderSource(path, limits)
            yield OpenedSource(opened, name, fingerprint_folder(opened))
            return
        opened = ZipSource(path, limits)
        try:
            yield OpenedSource(opened, name, fingerprint_file(path))
        finally:
            opened.close()
    finally:
        if spooled is not None:
            discard_spooled(spooled)
