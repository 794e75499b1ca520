"""Spaces: a private workspace for each visitor of one shared (classroom) server.

With ``TRANSFER_STUDIO_SPACES=1`` every visitor works in ``<workspace>/spaces/<key>/``, a workspace
of its own (datasets, runs, versions, exports) named by an unguessable key kept in the page URL, or
derived from the signed-in identity where Streamlit's sign-in is configured. Only the embedding
cache is shared (it holds no labels and is keyed by dataset content). Each space has limits: disk
used, datasets, and runs queued or training at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import LimitError, SpaceError
from core.run_state import RunStatus
from core.workspace import SPACE_FILE, Workspace, atomic_write_bytes, atomic_write_json, read_json

SPACES_ENV = "TRANSFER_STUDIO_SPACES"
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
DISK_ENV, DATASETS_ENV, QUEUED_ENV = ("TRANSFER_STUDIO_SPACE_MAX_DISK_MB", "TRANSFER_STUDIO_SPACE_MAX_DATASETS",
                                      "TRANSFER_STUDIO_SPACE_MAX_QUEUED")


def spaces_enabled() -> bool:
    """True when ``$TRANSFER_STUDIO_SPACES`` asks for a space per visitor."""
    return os.environ.get(SPACES_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def spaces_dir(base: Workspace) -> Path:
    return base.root / "spaces"


def create_space(base: Workspace, owner: str | None = None, key: str | None = None) -> Workspace:
    """A new empty space (``key``: a fresh unguessable one unless given); returns its workspace."""
    key = key or secrets.token_urlsafe(18)
    folder = spaces_dir(base) / key
    folder.mkdir(parents=True, exist_ok=True)
    if read_json(folder / SPACE_FILE) is None:
        atomic_write_json(folder / SPACE_FILE, {"key": key, "owner": owner, "created_at": time.time()})
    return Workspace.open(folder)


def open_space(base: Workspace, key: str) -> Workspace:
    """The workspace of space ``key``; SpaceError when there is no such space."""
    folder = spaces_dir(base) / key if key and KEY_PATTERN.match(key) else None
    if folder is None or read_json(folder / SPACE_FILE) is None:
        shown = (key or "")[:8]
        raise SpaceError(f"There is no space {shown!r}… on this server (deleted, or the link is mistyped). "
                         "Open the app's address without '?space=' to get a new space.")
    return Workspace.open(folder)


def identity_key(base: Workspace, identity: str) -> str:
    """The space key of a signed-in person: an HMAC of their identity under this server's secret salt."""
    salt_path = spaces_dir(base) / ".salt"
    if not salt_path.exists():
        atomic_write_bytes(salt_path, secrets.token_bytes(32))
    digest = hmac.new(salt_path.read_bytes(), identity.strip().lower().encode(), hashlib.sha256).hexdigest()
    return f"id-{digest[:40]}"


def space_for_identity(base: Workspace, identity: str) -> Workspace:
    """The space of a signed-in person, created on their first visit."""
    return create_space(base, owner=identity, key=identity_key(base, identity))


def space_workspaces(base: Workspace) -> list[Workspace]:
    """Every space of the server, oldest first."""
    folder = spaces_dir(base)
    found = [child for child in folder.iterdir() if (child / SPACE_FILE).is_file()] if folder.is_dir() else []
    spaces = [Workspace.open(child) for child in found]
    return sorted(spaces, key=lambda ws: (read_json(ws.root / SPACE_FILE, {}).get("created_at", 0), ws.space))


@dataclass(frozen=True)
class SpaceInfo:
    """What the teacher's view lists about a space."""

    key: str
    owner: str | None
    created_at: float
    bytes_used: int
    datasets: list[str]
    runs: list[str]
    active_runs: int


def describe_space(space: Workspace) -> SpaceInfo:
    from core import runs

    meta = read_json(space.root / SPACE_FILE, {})
    records = runs.list_runs(space)
    datasets = sorted(child.name for child in space.datasets_dir.iterdir() if child.is_dir())
    return SpaceInfo(key=space.space, owner=meta.get("owner"), created_at=meta.get("created_at", 0.0),
                     bytes_used=folder_bytes(space.root), datasets=datasets,
                     runs=[record["run_id"] for record in records],
                     active_runs=sum(record.get("status") in runs.ACTIVE_STATUSES for record in records))


def list_spaces(base: Workspace) -> list[SpaceInfo]:
    return [describe_space(space) for space in space_workspaces(base)]


def delete_space(base: Workspace, key: str) -> None:
    """Delete a space and everything in it; SpaceError while one of its runs is still training."""
    from core import runs

    space = open_space(base, key)
    for record in runs.list_runs(space):
        if record.get("status") in runs.ACTIVE_STATUSES:
            runs.request_stop(space, record["run_id"])
            runs.transition_run(space, record["run_id"], (RunStatus.QUEUED,), status=RunStatus.STOPPED,
                                finished_at=time.time(),
                                error="Cancelled: the space was deleted.")
    busy = [r["run_id"] for r in runs.list_runs(space) if r.get("status") == RunStatus.RUNNING]
    if busy:
        raise SpaceError(f"Run {busy[0]} of this space is still training; it was asked to stop. Delete the space "
                         "again in a few seconds.")
    trash = base.tmp_dir / f"deleted-space-{secrets.token_hex(4)}"
    base.tmp_dir.mkdir(parents=True, exist_ok=True)
    os.rename(space.root, trash)
    shutil.rmtree(trash, ignore_errors=True)


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (hard links to one file counted once)."""
    total, seen = 0, set()
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


@dataclass(frozen=True)
class SpaceLimits:
    """Per-space limits; ``from_env`` reads the server's settings."""

    max_bytes: int = 2048 * 2**20
    max_datasets: int = 10
    max_queued: int = 3

    @classmethod
    def from_env(cls) -> SpaceLimits:
        try:
            return cls(max_bytes=int(float(os.environ.get(DISK_ENV, "2048")) * 2**20),
                       max_datasets=int(os.environ.get(DATASETS_ENV, "10")),
                       max_queued=int(os.environ.get(QUEUED_ENV, "3")))
        except ValueError as exc:
            raise SpaceError(f"A space limit setting is not a number ({exc}). Set {DISK_ENV}, {DATASETS_ENV} and "
                             f"{QUEUED_ENV} to whole numbers.") from exc


def _mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB"


def _largest(space: Workspace) -> str:
    from core import runs

    items = [(folder_bytes(child), f"dataset {child.name}") for child in space.datasets_dir.iterdir() if child.is_dir()]
    items += [(folder_bytes(runs.run_dir(space, r["run_id"])), f"run {r['run_id']}") for r in runs.list_runs(space)]
    top = sorted(items, reverse=True)[:3]
    return "; largest: " + ", ".join(f"{name} ({_mb(size)})" for size, name in top) if top else ""


def check_dataset_room(workspace: Workspace, limits: SpaceLimits | None = None) -> None:
    """LimitError when a space has no room for one more dataset (nothing happens outside spaces)."""
    if workspace.space is None:
        return
    limits = limits or SpaceLimits.from_env()
    datasets = [child for child in workspace.datasets_dir.iterdir() if child.is_dir()]
    if len(datasets) >= limits.max_datasets:
        raise LimitError(f"Dataset limit reached: this space has {len(datasets)} datasets, the most allowed is "
                         f"{limits.max_datasets} ({DATASETS_ENV}). Delete a dataset you no longer need on the Data "
                         "page (Your datasets, Delete…), then try again. Nothing was added or lost.")
    used = folder_bytes(workspace.root)
    if used >= limits.max_bytes:
        raise LimitError(f"Disk limit reached: this space uses {_mb(used)} of its {_mb(limits.max_bytes)} "
                         f"({DISK_ENV}). Delete a dataset (Data page) or a run (Runs page) you no longer need"
                         f"{_largest(workspace)}. Nothing was added or lost.")


def check_run_room(workspace: Workspace, active: int, limits: SpaceLimits | None = None) -> None:
    """LimitError when a space already has ``max_queued`` runs queued or training (nothing outside spaces)."""
    if workspace.space is None:
        return
    limits = limits or SpaceLimits.from_env()
    if active >= limits.max_queued:
        raise LimitError(f"Run limit reached: this space has {active} runs queued or training, the most allowed "
                         f"at once is {limits.max_queued} ({QUEUED_ENV}). Wait for one to finish, or stop one on "
                         "the Runs page, then start this one. Nothing was lost.")
    used = folder_bytes(workspace.root)
    if used >= limits.max_bytes:
        raise LimitError(f"Disk limit reached: this space uses {_mb(used)} of its {_mb(limits.max_bytes)} "
                         f"({DISK_ENV}). Delete a run (Runs page) or a dataset (Data page) you no longer need"
                         f"{_largest(workspace)}, then start the run again. Nothing was lost.")
