"""Facts about processes of this machine, for telling a live worker from a dead one."""

from __future__ import annotations

from pathlib import Path


def process_start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from /proc); tells a process from a later one with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Interrupted(BaseException):
    """The worker was told to end (server shut down).

    A ``BaseException``, like ``KeyboardInterrupt``: it is raised from a signal handler at any point, and an
    ``except Exception`` on the way (around weight loading, say) must not report it as that step's failure.
    """
