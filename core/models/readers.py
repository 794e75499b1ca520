"""What prediction reads from users' files: the images of a zip, and a bundle's model, labels and config.

A zip of images goes through the same safety checks as dataset ingestion (``core.data.sources``) and skips entries by
the same rule (``core.data.layout.junk_reason``); a bundle (zip or folder) is read member by member under the
upload limits (``core.data.ingest_limits``), its ``model.keras`` loaded with Keras' safe mode.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from core.errors import ExportError, StudioError

MODEL_MEMBER = "model.keras"
MAX_JSON_BYTES = 16 * 1024**2  # labels.json and config.json of a bundle are a few kB


def read_zip_images(source, tmp_dir, *, max_images: int) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]], int]:
    """The image files of a zip (path or upload), at most ``max_images`` of them read into memory.

    The zip goes through the same safety checks as dataset ingestion, and entries are skipped by the
    same rule (``core.data.layout.junk_reason``: ``__MACOSX/``, hidden and system files, non-images).

    Returns:
        ``(images, skipped, left_out)``: up to ``max_images`` ``(name, bytes)`` pairs in archive order,
        ``(name, reason)`` of the skipped entries, and how many images were left out over the limit.

    Raises:
        DatasetError: an unsafe or unreadable zip.
    """
    from core.data.ingest_limits import IngestLimits
    from core.data.layout import LABELS_CSV, junk_reason
    from core.data.sources import open_source

    images, skipped, left_out = [], [], 0
    with open_source(source, Path(tmp_dir), IngestLimits.from_env()) as opened:
        for item in opened.source.files():
            reason = junk_reason(item.name)
            if reason is None and Path(item.name).name.lower() == LABELS_CSV:
                reason = "not an image file (extension '.csv')"
            if reason:
                skipped.append((item.name, reason))
            elif len(images) < max_images:
                images.append((item.name, opened.source.read(item.name)))
            else:
                left_out += 1
    return images, skipped, left_out


def images_from_zip(source, tmp_dir, *, max_images: int = 1000) -> list[tuple[str, bytes]]:
    """The image files of a zip (path or upload) as ``(name, bytes)`` pairs, ready for ``predict_images``.

    See :func:`read_zip_images` for the checks and what is skipped.

    Raises:
        DatasetError: an unsafe or unreadable zip, no images in it, or more than ``max_images``.
    """
    from core.errors import DatasetError

    name = Path(str(getattr(source, "name", source))).name
    images, _, left_out = read_zip_images(source, tmp_dir, max_images=max_images)
    if not images:
        raise DatasetError(f"'{name}' holds no image files (JPEG, PNG, GIF, BMP, WebP, TIFF). "
                           "Zip the images themselves, or upload them one by one.")
    if left_out:
        raise DatasetError(f"'{name}' holds {len(images) + left_out} images; at most {max_images} can be "
                           "predicted at once. Split the zip into smaller ones.")
    return images


class BundleFiles:
    """model.keras bytes, labels and config read from a bundle zip or folder."""

    def __init__(self, model_bytes: bytes, labels, config, tflite_bytes: bytes | None = None):
        if not labels:
            raise ExportError("The bundle has no labels.json; expected the class names. Re-export the run.")
        self.model_bytes, self.labels, self.config = model_bytes, labels, config
        self.tflite_bytes = tflite_bytes

    @classmethod
    def from_zip(cls, path: Path) -> BundleFiles:
        from core.data.ingest_limits import IngestLimits
        from core.data.sources import ZipSource

        limits = IngestLimits.from_env()
        try:
            source = ZipSource(path, limits)  # entry count, total size and compression ratio, as every upload
        except StudioError as exc:
            raise ExportError(f"The bundle {path.name} was refused: {exc}") from None
        try:
            names = [name for name in (f.name for f in source.files())
                     if name.rsplit("/", 1)[-1] == MODEL_MEMBER and "__MACOSX" not in name]
            if not names:
                raise ExportError(f"{path.name} has no model.keras; expected a bundle exported by Transfer Studio.")
            # A bundle re-zipped by hand may sit inside one folder: read the files next to model.keras.
            prefix = min(names, key=len)[: -len(MODEL_MEMBER)]
            sizes = {f.name: f.size for f in source.files()}

            def member(name: str, limit: int, variable: str):
                if prefix + name not in sizes:
                    return None
                if sizes[prefix + name] > limit:
                    raise ExportError(
                        f"The bundle {path.name} holds a {name} of {sizes[prefix + name]:,} bytes; the limit is "
                        f"{limit:,} ({variable}). Upload a bundle exported by Transfer Studio, or raise the limit.")
                return source.read(prefix + name)

            def member_json(name: str):
                data = member(name, MAX_JSON_BYTES, "a bundle's JSON files")
                return None if data is None else parse_json(data, f"{path.name}/{prefix}{name}")

            model = member(MODEL_MEMBER, limits.max_model_bytes, "TRANSFER_STUDIO_MAX_MODEL_BYTES")
            tflite = member("model.tflite", limits.max_model_bytes, "TRANSFER_STUDIO_MAX_MODEL_BYTES")
            return cls(model, member_json("labels.json"), member_json("config.json"), tflite)
        finally:
            source.close()

    @classmethod
    def from_folder(cls, path: Path) -> BundleFiles:
        if not (path / "model.keras").is_file():
            raise ExportError(f"{path.name} has no model.keras; expected an unpacked Transfer Studio bundle.")
        tflite = path / "model.tflite"
        return cls(read_bytes(path / "model.keras"), read_json_file(path / "labels.json"),
                   read_json_file(path / "config.json"), read_bytes(tflite) if tflite.is_file() else None)


def load_keras_bytes(data: bytes, source: str):
    import keras

    # load_model wants a file name ending in .keras; the bundle may be a zip, so go through a temp file.
    with tempfile.TemporaryDirectory(prefix="ts-model-") as folder:
        path = Path(folder) / "model.keras"
        path.write_bytes(data)
        try:
            return keras.saving.load_model(path, safe_mode=True)
        except Exception as exc:  # Keras raises ValueError, TypeError, KeyError... for a bad file
            raise ExportError(
                f"Cannot load the Keras model from {source}: {exc}. Expected a .keras file saved by "
                "Transfer Studio (Keras 3, no custom layers); re-export the run."
            ) from exc


def read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ExportError(f"Cannot read {path}: {exc.strerror or exc}. Check the path.") from exc


def parse_json(data: bytes, shown: str):
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ExportError(f"Cannot read {shown}: {exc}. Expected a JSON file; re-export the model.") from None


def read_json_file(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ExportError(f"Cannot read {path}: {exc}. Expected a JSON file; re-export the model.") from exc

