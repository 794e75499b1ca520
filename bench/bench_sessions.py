"""Four browser sessions start training at once on one server: every job is queued, run and finished, in order,
nothing lost. Drives four independent Streamlit sessions (AppTest) that share the server's job manager.

Prints a timeline; asserts nothing. Usage: ``.venv/bin/python bench/bench_sessions.py [--sessions 4]``
"""

from __future__ import annotations

import argparse
import os
import time

from _common import PROJECT_ROOT, setup_environment

scratch = setup_environment()
os.environ["TRANSFER_STUDIO_WORKSPACE"] = str(scratch / "workspace")
os.chdir(PROJECT_ROOT)

from streamlit.testing.v1 import AppTest  # noqa: E402

from core import runs  # noqa: E402
from core.data.sample import create_sample_dataset  # noqa: E402
from core.workspace import Workspace  # noqa: E402


def start_session(dataset_id: str, seed: int) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.session_state["dataset"] = dataset_id
    at.switch_page("pages/train.py")
    at.run()
    at.selectbox(key="train_weights").set_value("none")
    at.selectbox(key="train_image_size").set_value(96)
    at.number_input(key="train_epochs").set_value(3)
    at.number_input(key="train_seed").set_value(seed)
    at.run()
    next(b for b in at.button if b.label == "Start training").click()
    at.run()
    return at


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=4)
    args = parser.parse_args()
    workspace = Workspace.open(scratch / "workspace")
    dataset = create_sample_dataset(workspace)
    began = time.time()
    sessions = [start_session(dataset.id, seed) for seed in range(args.sessions)]
    run_ids = [at.session_state["run"] for at in sessions]
    print(f"{len(run_ids)} sessions started a run within {time.time() - began:.1f} s")
    for at in sessions:
        queued = [info.value for info in at.info if "queue" in info.value]
        print(f"  session shows: {queued[0] if queued else 'running'}")
    while True:
        records = [runs.load_run(workspace, run_id) for run_id in run_ids]
        if all(r["status"] in runs.FINAL_STATUSES for r in records):
            break
        time.sleep(1.0)
    print("\n| run | queued at (s) | started at (s) | finished at (s) | status | val accuracy |")
    print("|---|---|---|---|---|---|")
    for r in sorted(records, key=lambda r: r["started_at"]):
        print(f"| {r['run_id']} | {r['queued_at'] - began:.1f} | {r['started_at'] - began:.1f} | "
              f"{r['finished_at'] - began:.1f} | {r['status']} | {r['best_val_accuracy']:.3f} |")
    overlaps = sum(1 for a, b in zip(sorted(records, key=lambda r: r["started_at"]),
                                     sorted(records, key=lambda r: r["started_at"])[1:], strict=False)
                   if b["started_at"] < a["finished_at"])
    print(f"\nfinished: {sum(r['status'] == 'done' for r in records)} of {len(records)}; "
          f"overlapping runs with max_jobs=1: {overlaps}")


if __name__ == "__main__":
    main()
