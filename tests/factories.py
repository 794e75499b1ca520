"""Tiny generated datasets for tests (nothing binary is committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


def make_class_folders(root: Path, per_class: int = 10, size: int = 40, classes=("red", "green", "blue"),
                       seed: int = 0) -> Path:
    """Write ``root/<class>/<n>.png``: a noisy square of the class colour on a grey background."""
    rng = np.random.default_rng(seed)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = rng.integers(90, 140, size=(size, size, 3), dtype=np.uint8)
            x, y = rng.integers(0, size // 2, size=2)
            side = size // 2
            pixels[y:y + side, x:x + side] = np.clip(
                np.array(COLOURS[name]) + rng.integers(-20, 20, size=3), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{index:03d}.png")
    return root


def make_tiny_dataset(workspace, tmp_path: Path, per_class: int = 10, size: int = 40):
    """Ingest a 3-class generated folder into ``workspace``; returns the Dataset."""
    from core.data.datasets import ingest

    folder = make_class_folders(tmp_path / "tiny-source", per_class=per_class, size=size)
    return ingest(folder, workspace, val_fraction=0.3, seed=0)
