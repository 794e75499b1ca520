"""Helpers shared by the ingestion tests: tiny generated images and zips (this module holds no tests)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(seed: int = 0, size=(40, 32), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A small random image, different for every seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (name -> bytes) into a deflated zip."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def class_files(classes=("cats", "dogs"), per_class: int = 5, prefix: str = "", seed: int = 0) -> dict:
    """``{prefix}{class}/img_{i}.png`` -> distinct image bytes."""
    files = {}
    for c, name in enumerate(classes):
        for i in range(per_class):
            files[f"{prefix}{name}/img_{i}.png"] = image_bytes(seed + 1000 * c + i)
    return files


def listing(root: Path) -> list[str]:
    """Every path under ``root`` (files and folders), relative and sorted."""
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root)
                  for n in dirs + files)
