"""Facts about processes of this machine, for telling a live worker from a dead one."""

from __future__ import annotations

from pathlib import Path


def process_start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from /proc); tells a process from a later one with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
