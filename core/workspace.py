"""Where the app keeps its files, and atomic writes into it.

Everything the app writes lives under one workspace folder: ``datasets/``, ``runs/``,
``features/`` (embedding cache) and ``tmp/`` (staging for work in progress). A space of a shared
server (``core/spaces.py``) is a workspace of its own under ``spaces/`` whose ``space.json`` points
the embedding cache at the server workspace's ``features/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from core.errors import WorkspaceError

WORKSPACE_ENV = "TRANSFER_STUDIO_WORKSPACE"
_UMASK_LOCK = threading.Lock()
SPACE_FILE = "space.json"


def default_workspace_root() -> Path:
    """The workspace folder: ``$TRANSFER_STUDIO_WORKSPACE`` or ``./workspace``."""
    return Path(os.environ.get(WORKSPACE_ENV, "workspace")).expanduser().resolve()


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace. Create with ``Workspace.open(root)``.

    ``space`` is the key of the space this workspace is (None for a server's own workspace);
    ``shared_features`` the embedding cache it shares with the other spaces.
    """

    root: Path
    space: str | None = None
    shared_features: Path | None = None

    @classmethod
    def open(cls, root: str | os.PathLike | None = None) -> Workspace:
        """Open (and create if needed) the workspace at ``root`` or the default one."""
        path = Path(root).expanduser().resolve() if root else default_workspace_root()
        try:
            space = read_json(path / SPACE_FILE)
        except OSError:  # a file where the folder should be: reported below, when the folders cannot be made
            space = None
        workspace = cls(path, space["key"], path.parents[1] / "features") if space else cls(path)
        try:
            for folder in (workspace.datasets_dir, workspace.runs_dir,
                           workspace.features_dir, workspace.tmp_dir):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(
                f"Cannot create the workspace folder {path}: {exc.strerror or exc}. "
                f"Set {WORKSPACE_ENV} to a folder you can write to."
            ) from exc
        return workspace

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def features_dir(self) -> Path:
        return self.shared_features or self.root / "features"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def staging_dir(self, prefix: str) -> Path:
        """A fresh private folder under ``tmp/`` for work that is renamed into place when done."""
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp_dir))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half of one.

    The file gets the mode an ordinary ``open(path, "w")`` would (0666 less the umask: 0644 by default), not
    the owner-only 0600 of a temporary file, and the folder is synced after the rename so that a power loss
    cannot take back a finished write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise WorkspaceError(
            f"Cannot write {path}: {exc.strerror or exc}. Free some disk space or check the "
            f"permissions of the workspace folder."
        ) from exc


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only set it, racing other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # no /proc (macOS): set and restore, under a lock so our own threads agree
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform or file system that cannot open folders: nothing more to do
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8"))


def read_json(path: str | os.PathLike, default=None):
    """Read a JSON file; ``default`` when it does not exist or is unreadable mid-replace."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default
    except json.JSONDecodeError:
        return default
