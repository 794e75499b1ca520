"""``python -m core worker RUN_ID``: train one queued run (started by the job manager)."""

from __future__ import annotations

import os
import signal

from core.workspace import Workspace


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("worker", help="(internal) run one queued job (training or health check) in this process")
    parser.add_argument("run_id")
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.set_defaults(run=run)


def run(args) -> int:
    from core.jobs import watch_parent
    from core.runs import load_run
    from core.training import Interrupted, execute_run

    def interrupt(signum, frame):
        raise Interrupted()

    signal.signal(signal.SIGTERM, interrupt)
    if args.parent_pid:
        watch_parent(args.parent_pid, lambda: os.kill(os.getpid(), signal.SIGTERM))
    workspace = Workspace.open(args.workspace)
    if load_run(workspace, args.run_id).get("kind") == "health":
        from core.health_jobs import execute_health_job

        record = execute_health_job(workspace, args.run_id)
    else:
        record = execute_run(workspace, args.run_id)
    return 0 if record["status"] in ("done", "stopped") else 1
