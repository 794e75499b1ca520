"""Benchmark: ingestion speed and peak memory for each zip in ../shared/data.

Each zip is ingested into a fresh temporary workspace in its own Python process, so the peak
resident memory (``ru_maxrss`` of that process; decoding runs on threads, not child processes)
belongs to that zip alone. Prints a table; asserts nothing.

    .venv/bin/python bench/bench_ingest.py [ZIP ...]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def measure_one(zip_path: str) -> dict:
    """Ingest one zip in this process and return its figures."""
    sys.path.insert(0, str(ROOT))
    from core.data.datasets import ingest
    from core.data.ingest_limits import IngestLimits
    from core.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder:
        workspace = Workspace.open(folder)
        started = time.perf_counter()
        dataset = ingest(zip_path, workspace)
        seconds = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "zip": Path(zip_path).name, "zip_mib": os.path.getsize(zip_path) / 1024**2,
            "images": len(dataset.entries), "rejected": len(dataset.summary["rejected"]),
            "seconds": seconds, "images_per_second": len(dataset.entries) / seconds,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024,
            "workers": IngestLimits.from_env().workers(),
        }


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print(json.dumps(measure_one(argv[1])))
        return
    zips = [Path(a) for a in argv] or sorted(DATA.glob("*.zip"))
    print(f"{'zip':<26}{'MiB':>7}{'images':>8}{'rejected':>9}{'seconds':>9}{'images/s':>10}"
          f"{'cpu s':>8}{'peak RSS MiB':>14}{'threads':>9}")
    for zip_path in zips:
        out = subprocess.run([sys.executable, __file__, "--one", str(zip_path)], capture_output=True,
                             text=True, cwd=ROOT)
        if out.returncode != 0:
            print(f"{zip_path.name:<26} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['zip']:<26}{r['zip_mib']:>7.1f}{r['images']:>8}{r['rejected']:>9}{r['seconds']:>9.2f}"
              f"{r['images_per_second']:>10.1f}{r['cpu_seconds']:>8.1f}{r['peak_rss_mib']:>14.0f}{r['workers']:>9}")
    print(f"(cpu s > seconds means more than one core was busy; machine has {os.cpu_count()} cores)")


if __name__ == "__main__":
    main(sys.argv[1:])
