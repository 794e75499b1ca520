"""Decoding, normalizing and preparing images: one implementation for every step.

Ingestion, training, evaluation, prediction and the exported ``predict.py`` all read pixels
through :func:`load_rgb_image` / :func:`to_rgb` and size them with :func:`prepare_image`, so a
model sees exactly the same pixels everywhere.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
import zlib
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageOps, ImageStat, UnidentifiedImageError

from core.archive import IngestLimits, clean_text
from core.errors import ConfigError, DatasetError, WorkspaceError

RESIZE_MODES = ("squash", "crop", "pad", "crop-lanczos")
PAD_COLOR = (0, 0, 0)  # "pad" letterboxes with black, like tf.image.resize_with_pad
JPEG_QUALITY = 90
MAX_BYTES_IN_FLIGHT = 256 * 1024**2  # original bytes read but not yet decoded

# decode_image enforces its own, lower pixel limit from the header; Pillow's warning would only be noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageRejected(Exception):
    """One file that is not a usable image; the message is the reason shown to the user."""


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: transparency composited on white, 16-bit and float scaled to 0..255."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 255.0)
        scale = 255.0 / top if top > 255 else 1.0
        gray = np.clip(pixels * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _describe_unknown(data: bytes) -> str:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<svg", b"<")):
        return "not an image: the content is HTML/XML text whatever the file extension says"
    return "not an image Pillow can read (the content is not JPEG, PNG, GIF, BMP, WebP or TIFF)"


def decode_image(data: bytes, limits: IngestLimits, *, check_min_side: bool = True) -> Image.Image:
    """Fully decode image bytes into an upright RGB image.

    The pixel count is checked from the header before any pixel is decoded; the format comes
    from the content, not the file name; animations give their first frame; EXIF orientation
    is applied.

    Raises:
        ImageRejected: with the reason (empty, not an image, too many pixels, too small, truncated).
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"too many pixels ({exc}); the limit is {limits.max_pixels:,}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageRejected(_describe_unknown(data)) from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"too many pixels: {width}x{height} = {width * height:,}, the limit is {limits.max_pixels:,} "
            f"(TRANSFER_STUDIO_MAX_PIXELS); possible decompression bomb"
        )
    if check_min_side and min(width, height) < limits.min_side:
        raise ImageRejected(f"too small: {width}x{height}, the shorter side must be at least "
                            f"{limits.min_side} px (TRANSFER_STUDIO_MIN_SIDE)")
    try:
        image.load()
    except Exception as exc:  # Pillow raises many types for corrupt data; each is one bad file
        raise ImageRejected(f"unreadable or truncated image ({type(exc).__name__}: {exc})") from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not cost the picture; keep it as stored
        pass
    return to_rgb(image)


def is_grayscale(image: Image.Image) -> bool:
    """True when the RGB image carries (almost) no colour: gray, or gray with a faint tint or marks.

    Scanners and JPEG encoders leave a few levels of channel difference in gray pictures, so
    the mean spread between channels is compared with a small tolerance.
    """
    red, green, blue = image.resize((64, 64), Image.Resampling.BILINEAR, reducing_gap=2.0).split()
    # max - min over the channels == the largest pairwise difference; Pillow's C code keeps the GIL free
    spread = ImageChops.lighter(ImageChops.lighter(ImageChops.difference(red, green),
                                                   ImageChops.difference(green, blue)),
                                ImageChops.difference(red, blue))
    return ImageStat.Stat(spread).mean[0] < 8


def normalize_image(data: bytes, target: Path, limits: IngestLimits) -> dict:
    """Decode one uploaded file and store its normalized copy (RGB JPEG, longest side capped).

    Args:
        data: the original bytes.
        target: where the copy goes (written under a temporary name, then renamed).
        limits: pixel, size and ``max_side`` limits.

    Returns:
        ``{"sha256", "width", "height", "gray"}`` (original upright size) on success;
        ``{"sha256", "reason"}`` when the file is rejected.
    """
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        image = decode_image(data, limits)
    except ImageRejected as exc:
        return {"sha256": sha256, "reason": str(exc)}
    width, height = image.size
    image.thumbnail((limits.max_side, limits.max_side), Image.Resampling.BICUBIC)
    gray = is_grayscale(image)
    tmp = target.with_name(f".{target.name}.tmp")
    image.save(tmp, "JPEG", quality=JPEG_QUALITY)
    os.replace(tmp, target)
    return {"sha256": sha256, "width": width, "height": height, "gray": gray}


def normalize_files(source, names: list[str], images_dir: Path, limits: IngestLimits, report) -> list[dict]:
    """:func:`normalize_image` for many files of a source, on a thread pool (Pillow releases the GIL).

    Only a few files (at most ``2 x workers`` and ``MAX_BYTES_IN_FLIGHT`` of original bytes) are
    held in memory at any time, however large the upload.

    Args:
        source: a :class:`core.archive.ZipSource` or ``FolderSource``.
        names: the files to normalize; the copy of ``names[i]`` goes to ``images_dir/{i:06d}.jpg``.
        images_dir: existing folder for the copies.
        limits: safety limits (worker count included).
        report: ``report(fraction, message)``, called about every 1%.

    Returns:
        One result dict per name (see :func:`normalize_image`; a ``reason`` key means rejected).

    Raises:
        WorkspaceError: a copy cannot be written (disk full, permissions).
    """
    sizes = {item.name: item.size for item in source.files()}
    results: list[dict | None] = [None] * len(names)
    workers = limits.workers()
    pending: dict = {}  # future -> (index, bytes held)
    progress = _Progress(report, len(results))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
    try:
        for index, name in enumerate(names):
            size = sizes[name]
            while pending and (len(pending) >= 2 * workers
                               or sum(held for _, held in pending.values()) + size > MAX_BYTES_IN_FLIGHT):
                progress.add(_collect(pending, results))
            if size > limits.max_file_bytes:
                results[index] = {"reason": f"file of {size:,} bytes is over the limit of "
                                            f"{limits.max_file_bytes:,} (TRANSFER_STUDIO_MAX_FILE_BYTES)"}
                progress.add(1)
                continue
            try:
                data = source.read(name)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                results[index] = {"reason": f"corrupt entry, cannot be extracted ({exc})"}
                progress.add(1)
                continue
            target = images_dir / f"{index:06d}.jpg"
            pending[pool.submit(normalize_image, data, target, limits)] = (index, size)
        while pending:
            progress.add(_collect(pending, results))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _collect(pending: dict, results: list) -> int:
    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
    for future in finished:
        index, _ = pending.pop(future)
        try:
            results[index] = future.result()
        except OSError as exc:
            raise WorkspaceError(f"Cannot write the normalized images into the workspace: "
                                 f"{exc.strerror or exc}. Free some disk space and try again.") from exc
    return len(finished)


class _Progress:
    """Reports decoding progress about every 1% (a Streamlit bar redraws on each report)."""

    def __init__(self, report, total: int):
        self.report, self.total, self.done, self.next = report, total, 0, 0

    def add(self, count: int) -> None:
        self.done += count
        if self.done >= self.next or self.done == self.total:
            self.report(0.02 + 0.93 * self.done / max(self.total, 1),
                        f"Decoded {self.done:,} of {self.total:,} images")
            self.next = self.done + max(1, self.total // 100)


def load_rgb_image(source, limits: IngestLimits | None = None) -> Image.Image:
    """Read an image from a path, bytes or a binary file object as upright RGB.

    Args:
        source: ``str``/``Path`` of a file, ``bytes``, or an object with ``read()`` (e.g. an upload).
        limits: pixel limit to enforce; defaults to :class:`IngestLimits` from the environment.

    Raises:
        DatasetError: naming the file, when it cannot be read as an image.
    """
    limits = limits or IngestLimits.from_env()
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise DatasetError(f"Cannot read '{name}': {exc.strerror or exc}. Check the path.") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        name, data = "image", bytes(source)
    else:
        name = str(getattr(source, "name", "uploaded image"))
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read()
    try:
        return decode_image(data, limits, check_min_side=False)
    except ImageRejected as exc:
        raise DatasetError(
            f"Cannot use '{clean_text(name)}' as an image: {exc}. Use a JPEG, PNG, GIF, BMP, WebP or TIFF file."
        ) from None


def prepare_image(image: Image.Image, image_size: int, resize: str = "squash") -> np.ndarray:
    """Resize an image to the model's input: float32 ``(image_size, image_size, 3)``, values 0..255.

    Args:
        image: a PIL image in any mode (converted with :func:`to_rgb`).
        image_size: side of the square output.
        resize: ``"squash"`` (stretch to the square), ``"crop"`` (centre crop, keeps the aspect)
            or ``"pad"`` (fit inside the square, letterboxed with black), bilinear filtering; or
            ``"crop-lanczos"``: the centre crop with Lanczos filtering, Teachable Machine's own preparation.

    Raises:
        ConfigError: unknown ``resize`` or a non-positive ``image_size``.
    """
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize={resize!r} is not one of {', '.join(RESIZE_MODES)}. Pick one of those.")
    if int(image_size) < 1:
        raise ConfigError(f"image_size={image_size!r} must be a positive number of pixels, e.g. 224.")
    image = to_rgb(image)
    size = (int(image_size), int(image_size))
    if resize == "squash":
        out = image.resize(size, Image.Resampling.BILINEAR)
    elif resize == "crop":
        out = ImageOps.fit(image, size, Image.Resampling.BILINEAR)
    elif resize == "crop-lanczos":
        out = ImageOps.fit(image, size, Image.Resampling.LANCZOS)
    else:
        out = ImageOps.pad(image, size, Image.Resampling.BILINEAR, color=PAD_COLOR)
    return np.asarray(out, dtype=np.float32)
