"""Names from users' files: made safe to store and show, and refused where they point outside the upload."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path, PurePosixPath

from core.errors import DatasetError


def clean_text(text: str) -> str:
    """``text`` made safe to store as UTF-8 (undecodable bytes of file names become U+FFFD)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def check_entry_name(name: str, limits) -> None:
    """Refuse a path inside an upload that points outside it (absolute or ``..``) or lies deeper than
    ``limits.max_depth`` (a ``core.data.ingest_limits.IngestLimits``) folders."""
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


def entry_name(info: zipfile.ZipInfo) -> str:
    """A zip entry's path with forward slashes (zips made on Windows may use backslashes)."""
    return info.filename.replace("\\", "/")


def upload_name(name) -> str:
    """The last part of an uploaded file's name, safe as a file name (``upload.zip`` when there is none)."""
    base = clean_text(Path(str(name or "")).name).replace("\\", "_").replace("\0", "").strip()[:120]
    return base if base not in ("", ".", "..") else "upload.zip"


