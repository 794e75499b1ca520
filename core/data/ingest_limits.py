"""Limits that keep a hostile or broken upload from exhausting the machine, and the checks of a zip's entries
against them (before a byte is extracted): links, encryption, size, compression ratio (zip bombs).

Each limit can be set with an environment variable (``IngestLimits.from_env``).
"""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass, fields

from core.data.names import clean_text
from core.errors import DatasetError

_ENV_PREFIX = "TRANSFER_STUDIO_"


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


def format_mib(size: float) -> str:
    return f"{size / 1024**2:,.0f} MiB"


def check_entry(info: zipfile.ZipInfo, limits: IngestLimits) -> None:
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
                f"The zip entry '{shown}' expands {ratio:,.0f} times ({format_mib(info.file_size)} from "
                f"{info.compress_size:,} bytes); the limit is {limits.max_ratio:,.0f} "
                f"(TRANSFER_STUDIO_MAX_RATIO). This looks like a zip bomb; upload a zip of ordinary images."
            )


def check_overall_ratio(infos: list[zipfile.ZipInfo], total: int, limits: IngestLimits) -> None:
    """Many small entries that each stay under the per-entry check can still add up to a bomb."""
    compressed = sum(info.compress_size for info in infos)
    if total > limits.ratio_min_bytes and total / max(compressed, 1) > limits.max_ratio:
        raise DatasetError(
            f"The zip's {len(infos):,} entries expand {total / max(compressed, 1):,.0f} times "
            f"({format_mib(total)} from {compressed:,} bytes); the limit is {limits.max_ratio:,.0f} "
            f"(TRANSFER_STUDIO_MAX_RATIO). This looks like a zip bomb; upload a zip of ordinary images."
        )


