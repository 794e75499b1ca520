"""What one poll of a live run view costs the server, piece by piece, before and after the shared live cache.

Every tab watching a training run reruns its live view once a second; with 30 tabs that is 30 polls a second on
one server process. This times, in CPU milliseconds of one thread (median over many repeats), the pieces of one
poll: the cleanup Streamlit runs after every script run (with Keras loaded as ``scripts/serve.py`` does), reading
the run's files, and turning the two curves into Streamlit's chart message. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_live_view.py [--epochs 20,200,1000] [--repeats 200]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

from _common import PROJECT_ROOT, setup_environment

scratch = setup_environment()


def cpu_ms(function, repeats: int) -> float:
    """Median CPU time of one call, in ms (this thread only)."""
    times = []
    for _ in range(repeats):
        began = time.thread_time()
        function()
        times.append((time.thread_time() - began) * 1000)
    return statistics.median(times)


def history(epochs: int) -> list[dict]:
    return [{"epoch": e + 1, "phase": 1, "loss": 1.0 / (e + 1), "accuracy": 0.5 + 0.4 * e / epochs,
             "val_loss": 1.1 / (e + 1), "val_accuracy": 0.45 + 0.4 * e / epochs} for e in range(epochs)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", default="20,200,1000")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    from serve import preload  # Keras, TensorFlow and the app's core loaded, live objects frozen, as served

    preload()
    import keras

    repeats = args.repeats
    print("| piece of one poll | before (ms CPU) | after (ms CPU) |")
    print("|---|---|---|")
    before = cpu_ms(lambda: (gc.collect(2), keras.backend.clear_session()), repeats)
    after = cpu_ms(lambda: keras.backend.clear_session(free_memory=False), repeats)
    print(f"| cleanup after a script run (gc.collect(2) and clear_session(), against clear_session(free_memory=False), "
          f"not used: it saved nothing) | "
          f"{before:.2f} | {after:.2f} |")
    for epochs in (int(n) for n in args.epochs.split(",")):
        bench_epochs(epochs, repeats)


def bench_epochs(epochs: int, repeats: int) -> None:
    import streamlit as st

    from core.workspace import atomic_write_json, read_json
    from ui.charts import live_curves_spec
    from ui.live_runs import RUN_FILES, LiveRuns, with_arrow_points

    folder = Path(scratch) / f"run-{epochs}"
    folder.mkdir()
    atomic_write_json(folder / "run.json", {"run_id": "r", "status": "running", "config": {"epochs": epochs}})
    atomic_write_json(folder / "progress.json", {"stage": "phase 1", "batch": 3, "of": 9, "epoch": epochs})
    atomic_write_json(folder / "history.json", history(epochs))
    shared = LiveRuns()
    shared.look(folder)
    reads_before = cpu_ms(lambda: [read_json(folder / name) for name in RUN_FILES], repeats)
    reads_after = cpu_ms(lambda: shared.look(folder), repeats)
    print(f"| read the run, {epochs} epochs (every file parsed; ours: three stats, nothing changed) | "
          f"{reads_before:.2f} | {reads_after:.2f} |")
    points = history(epochs)
    inline = (live_curves_spec(points, "loss"), live_curves_spec(points, "accuracy"))
    arrow = tuple(with_arrow_points(spec) for spec in inline)
    charts_before = cpu_ms(lambda: [st.vega_lite_chart(spec) for spec in inline], repeats)
    charts_after = cpu_ms(lambda: [st.vega_lite_chart(spec) for spec in arrow], repeats)
    build = cpu_ms(lambda: tuple(with_arrow_points(live_curves_spec(points, m)) for m in ("loss", "accuracy")),
                   max(repeats // 10, 5))
    print(f"| two curve charts, {epochs} epochs (inline points; ours: prebuilt Arrow) | {charts_before:.2f} | "
          f"{charts_after:.2f} (built once per change: {build:.2f}) |")

if __name__ == "__main__":
    main()
