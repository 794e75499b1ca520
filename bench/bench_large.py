"""A 20,000-image dataset: generate, ingest, and train feature extraction with MobileNetV2 at 96 px in a worker
process, while the app server answers requests. Prints throughput, the worker's peak memory and the server's
worst response time; asserts nothing.

Usage: ``.venv/bin/python bench/bench_large.py [--images 20000]``
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _common import PROJECT_ROOT, setup_environment

scratch = setup_environment()

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from core import runs  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.data.datasets import ingest  # noqa: E402
from core.jobs import JobManager  # noqa: E402
from core.workspace import Workspace  # noqa: E402


def generate(folder: Path, count: int, classes: int = 10, size: int = 64) -> None:
    rng = np.random.default_rng(0)
    for index in range(count):
        label = index % classes
        pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
        pixels[:, :, label % 3] += np.uint8(40 + 15 * label)
        (folder / f"class_{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"class_{label}" / f"{index:05d}.jpg", quality=90)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20_000)
    args = parser.parse_args()
    workspace = Workspace.open(scratch / "workspace")
    source = scratch / "large"
    started = time.perf_counter()
    generate(source, args.images)
    print(f"generated {args.images} images in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    dataset = ingest(source, workspace)
    ingest_s = time.perf_counter() - started
    print(f"ingest: {ingest_s:.1f} s = {len(dataset.entries) / ingest_s:.0f} images/s")

    port = free_port()
    env = {**os.environ, "TRANSFER_STUDIO_WORKSPACE": str(workspace.root)}
    server = subprocess.Popen([sys.executable, "scripts/serve.py", "--server.port", str(port),
                               "--server.headless", "true"], cwd=PROJECT_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manager = JobManager(workspace)
    manager.start()
    try:
        config = TrainConfig(dataset_id=dataset.id, image_size=96, weights="none", epochs=5, batch_size=64)
        run_id = manager.submit(config)
        peak, worst, polls = 0.0, 0.0, 0
        while runs.load_run(workspace, run_id)["status"] not in runs.FINAL_STATUSES:
            pid = runs.load_run(workspace, run_id).get("pid")
            if pid:
                peak = max(peak, peak_rss_mb(pid))
            began = time.perf_counter()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10).read()
                worst = max(worst, time.perf_counter() - began)
                polls += 1
            except OSError:
                pass  # server still starting
            time.sleep(0.5)
        record = runs.load_run(workspace, run_id)
        timings = record["timings"]
        print(f"train ({record['status']}): features {timings.get('features_s', 0):.1f} s = "
              f"{len(dataset.entries) / max(timings.get('features_s', 1e-9), 1e-9):.0f} images/s, "
              f"head {timings.get('train_s', 0):.1f} s, total {timings.get('total_s', 0):.1f} s")
        print(f"worker peak memory (VmHWM): {peak:.0f} MB (target < 3072 MB)")
        print(f"app server health check during training: worst {worst * 1000:.0f} ms over {polls} requests")
    finally:
        manager.shutdown()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
