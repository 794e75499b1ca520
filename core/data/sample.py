"""A sample dataset the app draws itself: no download, same bytes every time.

Four visually distinct classes (circles, squares, stripes, triangles), 50 images each, 112 px,
with jittered colours, sizes, positions and a noisy background. The images are zipped in the
workspace ``tmp/`` and go through :func:`core.data.datasets.ingest` like any upload, so the sample
gets a manifest and a summary; the zip is identical on every call, hence so is the dataset id,
and a second call reuses the first dataset.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.workspace import Workspace

SAMPLE_NAME = "sample-shapes"
SAMPLE_CLASSES = ("circles", "squares", "stripes", "triangles")
IMAGES_PER_CLASS = 50
IMAGE_SIDE = 112
SEED = 1234


def _colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(low, high, size=3))


def draw_sample_image(kind: str, rng: np.random.Generator, side: int = IMAGE_SIDE) -> Image.Image:
    """One generated picture of ``kind`` (one of :data:`SAMPLE_CLASSES`)."""
    noise = rng.integers(0, 40, size=(side, side, 3), dtype=np.int16) + np.array(_colour(rng, 170, 216))
    image = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    colour = _colour(rng, 0, 150)
    size = int(rng.integers(side // 4, side // 2))
    x, y = (int(v) for v in rng.integers(size // 2 + 4, side - size // 2 - 4, size=2))
    box = (x - size // 2, y - size // 2, x + size // 2, y + size // 2)
    if kind == "circles":
        draw.ellipse(box, fill=colour)
    elif kind == "squares":
        draw.rectangle(box, fill=colour)
    elif kind == "triangles":
        draw.polygon([(x, box[1]), (box[0], box[3]), (box[2], box[3])], fill=colour)
    else:
        width = int(rng.integers(4, 9))
        offset = int(rng.integers(0, 2 * width))
        for start in range(-side + offset, side, 2 * width):
            draw.line([(start, 0), (start + side, side)], fill=colour, width=width)
    return image


def write_sample_zip(path: Path) -> None:
    """Write the sample images, one folder per class, into a zip with fixed timestamps."""
    rng = np.random.default_rng(SEED)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for kind in SAMPLE_CLASSES:
            for number in range(IMAGES_PER_CLASS):
                buffer = io.BytesIO()
                draw_sample_image(kind, rng).save(buffer, "PNG")
                info = zipfile.ZipInfo(f"{SAMPLE_NAME}/{kind}/{kind}_{number:03d}.png", (2024, 1, 1, 0, 0, 0))
                archive.writestr(info, buffer.getvalue())


def create_sample_dataset(workspace: Workspace, progress=None):
    """Ingest the generated sample (or return it when it already exists).

    Args:
        workspace: where the dataset is stored.
        progress: optional ``progress(fraction, message)`` callback.

    Returns:
        The sample :class:`core.data.datasets.Dataset` (4 classes, 40 train and 10 val images each).
    """
    from core.data.datasets import ingest

    handle = tempfile.NamedTemporaryFile(prefix="sample-", suffix=".zip", dir=workspace.tmp_dir, delete=False)
    handle.close()
    path = Path(handle.name)
    try:
        write_sample_zip(path)
        return ingest(path, workspace, val_fraction=0.2, seed=0, progress=progress, name=SAMPLE_NAME)
    finally:
        path.unlink(missing_ok=True)
