"""A MobileNetV2 saved whole as a .keras file, brought in as a base, against the built-in backbone; prints figures.

    nice -n 19 .venv/bin/python bench/bench_base_model.py

Ingests ../shared/data/hymenoptera.zip, trains the default run (feature-extraction, head chosen by
cross-validation) on the registry's ``mobilenet_v2`` with the shared ImageNet weights, then saves
``keras.applications.MobileNetV2(include_top=False, pooling="avg")`` with those same weights as one ``.keras``
file and trains the same run with that file as the base (``--input-scaling symmetric``, the automatic cut).
Goal: the file-based run is within one validation image of the built-in one. Extracts features twice (a few
minutes on 2 cores).
"""

from __future__ import annotations

import json
import time

from _common import setup_environment, shared_zip


def _train(workspace, argv) -> tuple[dict, float]:
    import contextlib
    import io

    from core.cli import main
    from core.runs import load_run

    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(["train", *argv, "--json", "--workspace", str(workspace.root)])
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"train {' '.join(argv)} exited {code}")
    printed = json.loads(out.getvalue().strip().splitlines()[-1])
    return load_run(workspace, printed["run_id"]), seconds


def main() -> int:
    scratch = setup_environment()
    import keras

    from core.data.datasets import ingest
    from core.workspace import Workspace

    workspace = Workspace.open(scratch / "workspace")
    dataset = ingest(shared_zip("hymenoptera.zip"), workspace)
    builtin, builtin_s = _train(workspace, [dataset.id])
    path = scratch / "mobilenet_v2_features.keras"
    keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights="imagenet",
                                   pooling="avg").save(path)
    based, based_s = _train(workspace, [dataset.id, "--base-model", str(path), "--input-scaling", "symmetric"])
    val = len(dataset.split_entries("val"))
    rows = [("built-in mobilenet_v2", builtin, builtin_s), (f"file {path.name}", based, based_s)]
    print(f"hymenoptera: {len(dataset.entries)} images, {val} on val; machine shared (loaded), timings indicative")
    print(f"{'base':32} {'val accuracy':>12} {'correct':>8} {'head':>26} {'features s':>10} {'runtime':>8} "
          f"{'total s':>8}")
    for name, record, seconds in rows:
        accuracy = record["best_val_accuracy"]
        print(f"{name:32} {accuracy:12.4f} {round(accuracy * val):8d} {record['head_selection']['chosen']:>26} "
              f"{record['timings'].get('features_s', 0):10.1f} {record['timings'].get('features_runtime'):>8} "
              f"{seconds:8.1f}")
    difference = abs(round(builtin["best_val_accuracy"] * val) - round(based["best_val_accuracy"] * val))
    print(f"base: {based['base']['description']}")
    print(f"difference: {difference} validation image(s); goal (within one image): {'met' if difference <= 1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
