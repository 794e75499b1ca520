"""Safe reading of what a user uploads: a zip (path or file object) or a folder.

Every zip is checked from its central directory before a single byte is extracted: entry count,
``..`` and absolute paths, symbolic links, encryption, folder depth, total uncompressed size and
compression ratio (zip bombs). Entries are then read one at a time, each capped at its declared
size, so memory stays bounded however large the archive is.

Limits live in :class:`IngestLimits`; each can be set with an environment variable.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath

from core.errors import DatasetError

_ENV_PREFIX = "TRANSFER_STUDIO_"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class IngestLimits:
    """Limits that keep a hostile or broken upload from exhausting the machine.

    Each field can be overridden with an environment variable named ``TRANSFER_STUDIO_`` plus the
    field name in upper case, read by :meth:`from_env`:

    - ``TRANSFER_STUDIO_MAX_ENTRIES`` (100,000): files and folders in one zip.
    - ``TRANSFER_STUDIO_MAX_TOTAL_BYTES`` (16 GiB): total uncompressed size of the zip.
    - ``TRANSFER_STUDIO_MAX_RATIO`` (200): compression ratio of one entry, and of the whole zip,
      once larger than ``TRANSFER_STUDIO_RATIO_MIN_BYTES`` (4 MiB); photos compress about 1:1,
      zip bombs 1000:1. Raise it for uncompressed formats with flat colours (BMP, TIFF).
    - ``TRANSFER_STUDIO_MAX_FILE_BYTES`` (256 MiB): one image file; larger ones are rejected.
    - ``TRANSFER_STUDIO_MAX_PIXELS`` (80,000,000): width x height read from the image header
      before decoding (decompression bombs); larger images are rejected.
    - ``TRANSFER_STUDIO_MIN_SIDE`` (16): images with a shorter side are rejected.
    - ``TRANSFER_STUDIO_MAX_DEPTH`` (16): folder levels of one path.
    - ``TRANSFER_STUDIO_MAX_SIDE`` (512): longest side of the stored normalized copy.
    - ``TRANSFER_STUDIO_INGEST_WORKERS`` (0 = one per CPU core): decoding threads.
    - ``TRANSFER_STUDIO_MAX_MODEL_BYTES`` (1 GiB): the ``model.keras`` of an uploaded bundle.

    The defaults allow a 20,000-photo dataset.
    """

    max_entries: int = 100_000
    max_total_bytes: int = 16 * 1024**3
    max_ratio: float = 200.0
    ratio_min_bytes: int = 4 * 1024**2
    max_file_bytes: int = 256 * 1024**2
    max_pixels: int = 80_000_000
    min_side: int = 16
    max_depth: int = 16
    max_side: int = 512
    ingest_workers: int = 0
    max_model_bytes: int = 1024**3

    @classmethod
    def from_env(cls, environ=None) -> IngestLimits:
        """Defaults overridden by ``TRANSFER_STUDIO_<FIELD>`` environment variables."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(_ENV_PREFIX + field.name.upper())
            if raw is None:
                continue
            kind = float if field.type in ("float", float) else int
            try:
                values[field.name] = kind(raw)
            except ValueError:
                raise DatasetError(
                    f"{_ENV_PREFIX}{field.name.upper()}={raw!r} is not a number. Set it to "
                    f"{'an integer' if kind is int else 'a number'} such as {getattr(cls, field.name)!r} or unset it."
                ) from None
        return cls(**values)

    def workers(self) -> int:
        """Number of decoding threads to use."""
        if self.ingest_workers > 0:
            return self.ingest_workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class SourceFile:
    """One file of the upload: its path inside the archive or folder and its size."""

    name: str
    size: int


def clean_text(text: str) -> str:
    """``text`` made safe to store as UTF-8 (undecodable bytes of file names become U+FFFD)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _mib(size: float) -> str:
    return f"{size / 1024**2:,.0f} MiB"


def _check_name(name: str, limits: IngestLimits) -> None:
    shown = clean_text(name)
    parts = PurePosixPath(name).parts
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DatasetError(
            f"The zip entry '{shown}' points outside the archive (absolute path or '..'); such zips can "
            f"overwrite files and are refused. Re-create the zip from the folder itself (e.g. "
            f"'zip -r data.zip my_folder')."
        )
    if len(parts) - 1 > limits.max_depth:
        raise DatasetError(
            f"The zip entry '{shown}' is {len(parts) - 1} folder levels deep; the limit is {limits.max_depth} "
            f"(TRANSFER_STUDIO_MAX_DEPTH). Put the class folders near the top of the zip."
        )


def _check_info(info: zipfile.ZipInfo, limits: IngestLimits) -> None:
    shown = clean_text(info.filename)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DatasetError(
            f"The zip entry '{shown}' is a symbolic link; links are refused because they can point at "
            f"other files on the server. Zip the real files instead (zip without --symlinks)."
        )
    if info.flag_bits & 0x1:
        raise DatasetError(
            f"The zip entry '{shown}' is encrypted (password-protected); encrypted zips are not supported. "
            f"Re-create the zip without a password."
        )
    if info.file_size > limits.ratio_min_bytes:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            raise DatasetError(
                f"The zip entry '{shown}' expands {ratio:,.0f} times ({_mib(info.file_size)} from "
                f"{info.compress_size:,} bytes); the limit is {limits.max_ratio:,.0f} "
                f"(TRANSFER_STUDIO_MAX_RATIO). This looks like a zip bomb; upload a zip of ordinary images."
            )


def _check_overall_ratio(infos: list[zipfile.ZipInfo], total: int, limits: IngestLimits) -> None:
    """Many small entries that each stay under the per-entry check can still add up to a bomb."""
    compressed = sum(info.compress_size for info in infos)
    if total > limits.ratio_min_bytes and total / max(compressed, 1) > limits.max_ratio:
        raise DatasetError(
            f"The zip's {len(infos):,} entries expand {total / max(compressed, 1):,.0f} times "
            f"({_mib(total)} from {compressed:,} bytes); the limit is {limits.max_ratio:,.0f} "
            f"(TRANSFER_STUDIO_MAX_RATIO). This looks like a zip bomb; upload a zip of ordinary images."
        )


def _entry_name(info: zipfile.ZipInfo) -> str:
    return info.filename.replace("\\", "/")


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
                name = _entry_name(info)
                _check_name(name, limits)
                _check_info(info, limits)
                total += info.file_size
                if total > limits.max_total_bytes:
                    raise DatasetError(
                        f"The zip expands to more than {_mib(limits.max_total_bytes)} (reached at entry "
                        f"'{clean_text(name)}'); the limit is TRANSFER_STUDIO_MAX_TOTAL_BYTES. Upload a "
                        f"smaller dataset or raise the limit."
                    )
                if not info.is_dir():
                    self._infos[name] = info
            _check_overall_ratio(infos, total, limits)
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
                _check_name(relative, limits)
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


def upload_name(name) -> str:
    """The last part of an uploaded file's name, safe as a file name (``upload.zip`` when there is none)."""
    base = clean_text(Path(str(name or "")).name).replace("\\", "_").replace("\0", "").strip()[:120]
    return base if base not in ("", ".", "..") else "upload.zip"


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
