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

from core.config import RESIZE_MODES  # declared once, with TrainConfig
from core.data.ingest_limits import IngestLimits
from core.data.names import clean_text
from core.errors import ConfigError, DatasetError, WorkspaceError

PAD_COLOR = (0, 0, 0)  # "pad" letterboxes with black, like tf.image.resize_with_pad
JPEG_QUALITY = 90
DEFAULT_MAX_SIDE = IngestLimits().max_side
MAX_BYTES_IN_FLIGHT = 256 * 1024**2  # original bytes read but not yet decoded

# decode_image enforces its own, lower pixel limit from the header; Pillow's warning would only be noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageRejected(Exception):
    """One file that is not a usable image; the message is the reason shown to the user."""


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: transparency composited on white, 16-bit, 32-bit and float scaled to 0..255."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        gray = np.clip(pixels * (255.0 / full_scale(image.mode, pixels)), 0, 255)
        return Image.fromarray(np.round(gray).astype(np.uint8)).convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def full_scale(mode: str, pixels: np.ndarray) -> float:
    """The value that means white for a single-channel image of ``mode`` holding ``pixels``.

    One rule for every mode: the smallest of the usual ranges that holds the brightest pixel (1.0 for float
    images, 255 for 8-bit values, 65,535 for 16-bit ones), else the brightest pixel itself. "I;16" images
    are 16-bit by definition, so they always use 65,535.
    """
    if mode.startswith("I;16"):
        return 65535.0
    peak = float(np.max(pixels)) if pixels.size else 0.0
    ranges = (1.0, 255.0, 65535.0) if mode == "F" else (255.0, 65535.0)
    return next((top for top in ranges if peak <= top), peak)


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
    _allow_pixels(limits.max_pixels)
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageRejected(f"too many pixels: over twice the limit of {limits.max_pixels:,} "
                            f"(TRANSFER_STUDIO_MAX_PIXELS); possible decompression bomb") from None
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


def _allow_pixels(max_pixels: int) -> None:
    """Let Pillow open images up to our own limit, which :func:`decode_image` checks from the header itself.

    Pillow refuses images over twice its ``MAX_IMAGE_PIXELS`` (89 million) before we can look at them, so a
    TRANSFER_STUDIO_MAX_PIXELS above 179 million would otherwise have no effect. The limit only ever grows.
    """
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


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


def _capped(image: Image.Image, max_side: int) -> Image.Image:
    image = image.copy()
    image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return image


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def encode_stored(image: Image.Image, max_side: int) -> bytes:
    """The bytes ingestion stores for an upright RGB image: longest side capped at ``max_side``, JPEG."""
    return _jpeg(_capped(image, max_side))


def as_stored(image: Image.Image, max_side: int = DEFAULT_MAX_SIDE) -> Image.Image:
    """The pixels a model was trained on for this image: what ingestion would have stored, decoded again.

    Prediction applies this to every image from outside a dataset, so an uploaded original and its stored
    copy reach the model as the same pixels.
    """
    stored = Image.open(io.BytesIO(encode_stored(to_rgb(image), max_side)))
    stored.load()
    return stored


def normalize_image(data: bytes, target: Path, limits: IngestLimits) -> dict:
    """Decode one uploaded file and store its normalized copy (RGB JPEG, longest side capped).

    Args:
        data: the original bytes.
        target: where the copy goes (written under a temporary name, then renamed).
        limits: pixel, size and ``max_side`` limits.

    Returns:
        ``{"sha256", "width", "height", "gray", "phash", "mode", "exif_rotated"}`` (original upright size,
        perceptual hash of the copy, the stored colour mode) on success;
        ``{"sha256", "reason"}`` when the file is rejected.
    """
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        image = decode_image(data, limits)
    except ImageRejected as exc:
        return {"sha256": sha256, "reason": str(exc)}
    width, height = image.size
    capped = _capped(image, limits.max_side)
    gray = is_grayscale(capped)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(_jpeg(capped))
    os.replace(tmp, target)
    from core.data.near_duplicates import perceptual_hash

    return {"sha256": sha256, "width": width, "height": height, "gray": gray, "phash": perceptual_hash(image),
            **describe_original(data)}


def describe_original(data: bytes) -> dict:
    """``{"mode": Pillow mode as stored, "exif_rotated": True when an EXIF orientation turned it}`` (header only)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            orientation = image.getexif().get(0x0112, 1)
            return {"mode": image.mode, "exif_rotated": orientation in (2, 3, 4, 5, 6, 7, 8)}
    except Exception:  # already decoded once; a header this odd just goes uncounted
        return {"mode": "RGB", "exif_rotated": False}


def normalize_files(source, names: list[str], images_dir: Path, limits: IngestLimits, report) -> list[dict]:
    """:func:`normalize_image` for many files of a source, on a thread pool (Pillow releases the GIL).

    Only a few files (at most ``2 x workers`` and ``MAX_BYTES_IN_FLIGHT`` of original bytes) are
    held in memory at any time, however large the upload.

    Args:
        source: a :class:`core.data.sources.ZipSource` or ``FolderSource``.
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
