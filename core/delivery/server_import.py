"""Importing a zip or folder that already sits on the server, confined to a folder the operator chose.

Off unless ``TRANSFER_STUDIO_IMPORT_ROOT`` names a folder. Paths are resolved (symbolic links
followed) and must stay inside that root, so a user cannot read anything else on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import DatasetError

IMPORT_ROOT_ENV = "TRANSFER_STUDIO_IMPORT_ROOT"


def import_root() -> Path | None:
    """The operator's import folder, or None when server imports are off."""
    value = os.environ.get(IMPORT_ROOT_ENV)
    return Path(value).expanduser().resolve() if value else None


def resolve_import_path(text: str, root: Path | None = None) -> Path:
    """The zip or folder ``text`` names, relative to the import root; DatasetError when outside it or missing."""
    root = root or import_root()
    if root is None:
        raise DatasetError(f"Importing from the server is off. An operator can turn it on by setting "
                           f"{IMPORT_ROOT_ENV} to the folder users may import from.")
    text = (text or "").strip()
    if not text:
        raise DatasetError(f"Type the path of a zip or folder inside {root}.")
    candidate = Path(text).expanduser()
    path = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if path != root and root not in path.parents:
        raise DatasetError(f"{text!r} is outside the import folder {root}. Only zips and folders inside it can "
                           "be imported.")
    if not path.exists():
        raise DatasetError(f"{text!r} does not exist in {root}. Check the spelling (names are case-sensitive).")
    if path.is_file() and path.suffix.lower() != ".zip":
        raise DatasetError(f"{text!r} is a file but not a .zip. Give a zip or a folder of class folders.")
    return path


def list_importable(root: Path | None = None, limit: int = 200) -> list[str]:
    """Zips and folders directly inside the import root, as relative paths (for a picker)."""
    root = root or import_root()
    if root is None or not root.is_dir():
        return []
    entries = sorted(p for p in root.iterdir() if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() == ".zip"))
    return [p.name for p in entries[:limit]]
