"""Teachable Machine imports against their own runtimes on many real photos; prints figures, asserts nothing.

    .venv/bin/python bench/bench_teachable.py [--photos 153]

Imports ../shared/models/teachable_machine/waste_keras, runs it over the validation photos of
../shared/data/hymenoptera.zip with the app's Predictor and with tf-keras (Keras 2, in its own interpreter, on
Teachable Machine's own pixel preparation), and prints the largest probability difference and the top-1
agreement, with the time each side took.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=153)
    args = parser.parse_args()
    from core.delivery.teachable_model import import_teachable
    from core.models.prediction import Predictor
    from core.workspace import Workspace

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        with zipfile.ZipFile(SHARED / "data" / "hymenoptera.zip") as archive:
            names = sorted(n for n in archive.namelist() if n.startswith("val/") and n.endswith(".jpg"))
            names = names[:args.photos]
            archive.extractall(folder, names)
        photos = [str(folder / name) for name in names]
        started = time.perf_counter()
        record = import_teachable(Workspace.open(folder / "ws"), SHARED / "models/teachable_machine/waste_keras")
        import_s = time.perf_counter() - started
        predictor = Predictor.from_run(Workspace.open(folder / "ws"), record["run_id"])
        started = time.perf_counter()
        ours = predictor.predict_probabilities(photos)
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "tests" / "teachable_reference.py"), "keras",
                               str(SHARED / "models/teachable_machine/waste_keras/keras_model.h5"), *photos],
                              capture_output=True, text=True, check=True)
        reference_s = time.perf_counter() - started
    expected = np.asarray(json.loads(done.stdout.strip().splitlines()[-1])["probabilities"])
    print(f"photos: {len(photos)}  import: {import_s:.1f} s")
    print(f"max |ours - tf-keras| probability: {np.abs(ours - expected).max():.2e}")
    print(f"top-1 identical: {int((ours.argmax(1) == expected.argmax(1)).sum())} of {len(photos)}")
    print(f"predicted classes: {dict(zip(*np.unique(ours.argmax(1), return_counts=True), strict=True))}")
    print(f"time: ours {ours_s:.1f} s (in process), tf-keras {reference_s:.1f} s (new interpreter, load included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
