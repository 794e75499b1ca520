"""``python -m core worker RUN_ID``: train one queued run (started by the job manager)."""

from __future__ import annotations

import os
import signal

from core.workspace import Workspace


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("worker", help="(internal) train one run in this process")
    parser.add_argument("run_id")
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.set_defaults(run=run)


def run(args) -> int:
    from core.jobs import watch_parent
    from core.training import Interrupted, execute_run

    def interrupt(signum, frame):
        raise Interrupted()

    signal.signal(signal.SIGTERM, interrupt)
    if args.parent_pid:
        watch_parent(args.parent_pid, lambda: os.kill(os.getpid(), signal.SIGTERM))
    record = execute_run(Workspace.open(args.workspace), args.run_id)
    return 0 if record["status"] in ("done", "stopped") else 1
