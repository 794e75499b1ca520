"""``python -m core worker RUN_ID``: train one queued run (started by the job manager).

Across machines (``TRANSFER_STUDIO_WORKERS`` lists them, this server first), every other machine runs
``python -m core worker --join N --workspace SHARED``: it waits for runs the server starts across the workers and
trains each as worker ``N`` (``--as-worker N RUN_ID`` is one such run), writing only to a temporary folder.
"""

from __future__ import annotations

import os
import signal

from core.run_state import RESULT_STATUSES
from core.workspace import Workspace


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("worker", help="(internal) run one queued job (training, health check, export, "
                                                  "speed, embedding map) in this process; --join N: serve as "
                                                  "worker N of the server's runs")
    parser.add_argument("run_id", nargs="?")
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--as-worker", type=int, default=None, metavar="N",
                        help="train RUN_ID as worker N of TRANSFER_STUDIO_WORKERS (not the chief)")
    parser.add_argument("--join", type=int, default=None, metavar="N",
                        help="wait for runs across TRANSFER_STUDIO_WORKERS and train each as worker N")
    parser.set_defaults(run=run)


def run(args) -> int:
    from core.errors import ConfigError
    from core.jobs import watch_parent
    from core.processes import Interrupted
    from core.runs import load_run
    from core.training.trainer import execute_run

    def interrupt(signum, frame):
        raise Interrupted()

    signal.signal(signal.SIGTERM, interrupt)
    if args.parent_pid:
        watch_parent(args.parent_pid, lambda: os.kill(os.getpid(), signal.SIGTERM))
    workspace = Workspace.open(args.workspace)
    if args.join is not None:
        from core.training.cluster import serve_as_worker

        return serve_as_worker(workspace, args.join)
    if not args.run_id:
        raise ConfigError("Give the RUN_ID to train, or --join N to serve as worker N.")
    record = load_run(workspace, args.run_id)
    if args.as_worker is not None:
        from core.training.trainer import train_as_worker

        return train_as_worker(workspace, record, args.as_worker)
    from core.tool_jobs import TOOL_KINDS

    if record.get("kind") == "health":
        from core.health_jobs import execute_health_job

        record = execute_health_job(workspace, args.run_id)
    elif record.get("kind") in TOOL_KINDS:  # export, speed, embedding-map
        from core.tool_jobs import execute_tool_job

        record = execute_tool_job(workspace, args.run_id)
    else:
        if record.get("config", {}).get("distribution") == "multi-worker":
            from core.training.distribute import multi_worker_strategy

            multi_worker_strategy()  # the chief of a run across workers: before any other TensorFlow work
        record = execute_run(workspace, args.run_id)
    return 0 if record["status"] in RESULT_STATUSES else 1
