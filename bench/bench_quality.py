"""The model we hand over against the seed articles' recipe, on every shared dataset, on the same split.

For each zip in ../shared/data: ingest it as a user would (a test split is carved from an upload without splits
once every class has 100 images), train each strategy with default settings (MobileNetV2 224 px, ImageNet
weights), and train the seed recipe (frozen base inside the model, global average pooling, Dense 256 ReLU,
softmax, Adam 1e-4, ``model.fit`` over the images for 10 epochs, the last epoch kept) on the same training
images. Every accuracy is the saved model's on the run's headline split (images that chose nothing), with its
95% Wilson interval. Seconds are wall time of building the model and training it (feature extraction
included), side by side on the same machine in one bench run, so the ratio against the seed recipe is what to read;
absolute seconds swing with the machine's load.

Each of our runs trains in a process of its own with a new workspace, as the app trains every run (``python -m
core worker``): it computes its embeddings and builds its model as a first run does; its seconds are the run
record's (``timings``: build, features, train). The seed recipe trains in this process. Library imports (Keras,
scikit-learn) happen before any timing, for both recipes.

``--seeds K`` trains every recipe with seeds 0 to K-1 (the seed recipe's initialisation and shuffling; ours: the
folds of the head search and the hidden-layer head's initialisation); the split stays the same. One seed's
accuracy on a few dozen headline images moves by several images (brain_tumor_mri's 51: the seed recipe got 40 to 46
over five seeds), so the table gives each recipe's mean over the seeds, the range of its correct images, and
the median seconds; the time ratio is of medians.

Results are appended to a JSON-lines file as they come (``--out``), so a long run keeps what it finished;
``--table`` prints the Markdown table of a results file. Asserts nothing.

Usage: ``.venv/bin/python bench/bench_quality.py [--datasets hymenoptera ...] [--strategies ...] [--seeds K]
[--out F]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import setup_environment, shared_zip

scratch = setup_environment()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import sklearn.linear_model  # noqa: E402, F401  (imported before timing, as Keras is)

from core.config import TrainConfig  # noqa: E402
from core.data.datasets import ingest  # noqa: E402
from core.data.roles import accuracy_with_interval  # noqa: E402
from core.models.backbones import get_backbone  # noqa: E402
from core.models.pipeline import make_image_dataset  # noqa: E402
from core.models.weights import resolve_weights  # noqa: E402
from core.training.trainer import train_model  # noqa: E402
from core.workspace import Workspace  # noqa: E402

DATASETS = ("hymenoptera", "brain_tumor_mri", "sign_language_digits")
STRATEGIES = ("feature-extraction", "fine-tune", "from-scratch", "seed-recipe")


def seed_recipe(dataset, headline: str, epochs: int = 10, seed: int = 0) -> dict:
    """The seed articles' recipe, trained on every training image, scored on the headline split."""
    spec = get_backbone("mobilenet_v2")
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    base = keras.applications.MobileNetV2(include_top=False, weights=resolve_weights(spec, 224, "imagenet")
                                          .keras_weights, input_shape=(224, 224, 3))
    base.trainable = False
    inputs = keras.Input((224, 224, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    x = keras.layers.Dense(256, activation="relu")(x)
    outputs = keras.layers.Dense(len(dataset.classes), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train = make_image_dataset(dataset.paths("train"), dataset.label_indices("train"), image_size=224,
                               shuffle=True)
    model.fit(train, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - started
    probabilities = model.predict(make_image_dataset(dataset.paths(headline), image_size=224), verbose=0)
    return {"seconds": seconds, "headline": accuracy_with_interval(dataset.label_indices(headline), probabilities,
                                                                   headline)}


def run_ours(workspace, dataset, strategy: str, overrides: dict, seed: int = 0) -> dict:
    config = TrainConfig(dataset_id=dataset.id, strategy=strategy, image_size=224, seed=seed, **overrides)
    record = train_model(config, workspace)
    if record["status"] != "done":
        raise SystemExit(f"error: {strategy} on {dataset.name} ended {record['status']}: {record.get('error')}")
    timings = record["timings"]
    seconds = timings.get("build_s", 0.0) + timings.get("features_s", 0.0) + timings.get("train_s", 0.0)
    return {"seconds": round(seconds, 3), "headline": record["headline"],
            "cv_estimate": record.get("cv_estimate"), "roles": record.get("roles"),
            "head": (record.get("head_selection") or {}).get("chosen"), "epochs_run": record.get("epochs_run"),
            "timings": timings, "features_cached": record.get("features_cached")}


def run_in_own_process(name: str, strategy: str, seed: int, overrides: dict, split: list) -> dict:
    """One of our runs in a new process with a new workspace, as the app runs every training (``python -m core
    worker``): it computes its embeddings as a first run does, and builds its model in a fresh Keras. Run in the
    bench's own process instead, a run's seconds depend on the runs before it (brain_tumor_mri: 2.4 s after
    hymenoptera's runs, then 2.7 to 2.9 s; 3.1 s in a new process)."""
    command = [sys.executable, __file__, "--child", json.dumps({"dataset": name, "strategy": strategy, "seed": seed,
                                                                 "overrides": overrides})]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(CHILD_MARK)]
    if done.returncode or not lines:
        raise SystemExit(f"error: {strategy} on {name} (seed {seed}) failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len(CHILD_MARK):])
    if [tuple(pair) for pair in result.pop("split")] != [tuple(pair) for pair in split]:
        raise SystemExit(f"error: {name} was split differently in a new workspace")
    return result


CHILD_MARK = "bench-quality-result "


def child(spec: dict) -> None:
    """The ``--child`` side of ``run_in_own_process``: ingest, train, print the result as one JSON line."""
    workspace = Workspace.open(scratch / "workspace")
    dataset = ingest(shared_zip(f"{spec['dataset']}.zip"), workspace)
    result = run_ours(workspace, dataset, spec["strategy"], spec["overrides"], seed=spec["seed"])
    result["split"] = [(e.source, e.split) for e in dataset.entries]
    print(CHILD_MARK + json.dumps(result, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)),
          flush=True)


def print_table(rows: list[dict]) -> None:
    """One row per dataset and recipe: mean accuracy over its seeds (with the interval of one seed when there is
    one seed), the range of correct headline images, median seconds and the ratio of medians to the seed recipe."""
    print("| dataset | recipe | seeds | accuracy (95% CI of one seed; mean over seeds) | correct of headline | "
          "split (images) | median seconds | time vs seed recipe | detail |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["strategy"]), []).append(r)
    seed_seconds = {d: float(np.median([r["seconds"] for r in g])) for (d, s), g in groups.items()
                    if s == "seed-recipe"}
    for (name, strategy), group in groups.items():
        h = group[0]["headline"]
        correct = [r["headline"].get("correct", round(r["headline"]["accuracy"] * r["headline"]["n"])) for r in group]
        seconds = float(np.median([r["seconds"] for r in group]))
        ratio = f"{seconds / seed_seconds[name]:.2f}x" if name in seed_seconds else "-"
        mean = float(np.mean([r["headline"]["accuracy"] for r in group]))
        accuracy = (f"{mean:.3f} ({h['ci95'][0]:.3f}-{h['ci95'][1]:.3f})" if len(group) == 1 else f"{mean:.3f}")
        detail = []
        heads = sorted({r["head"] for r in group if r.get("head")})
        if heads:
            detail.append("head " + ", ".join(heads))
        cvs = [r["cv_estimate"]["accuracy"] for r in group if r.get("cv_estimate")]
        if cvs:
            detail.append(f"CV over all {group[0]['cv_estimate']['n']}: {np.mean(cvs):.3f}")
        epochs = [r["epochs_run"] for r in group if r.get("epochs_run")]
        if epochs and strategy == "fine-tune":
            detail.append(f"{'/'.join(str(e) for e in epochs)} epochs")
        print(f"| {name} | {strategy} | {len(group)} | {accuracy} | "
              f"{min(correct)}-{max(correct)} (mean {np.mean(correct):.1f}) of {h['n']} | {h['split']} ({h['n']}) | "
              f"{seconds:.1f} | {ratio} | {'; '.join(detail)} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--fine-tune-layers", type=int, default=None, help="override, to compare settings")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=None, help="override")
    parser.add_argument("--seeds", type=int, default=1, help="train every recipe with seeds 0 to K-1")
    parser.add_argument("--out", type=Path, default=Path("bench_quality.jsonl"))
    parser.add_argument("--table", action="store_true", help="print the table of --out and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.table:
        print_table([json.loads(line) for line in args.out.read_text().splitlines() if line.strip()])
        return
    overrides = {key: value for key, value in (("fine_tune_layers", args.fine_tune_layers),
                                                ("fine_tune_learning_rate", args.fine_tune_learning_rate))
                 if value is not None}
    workspace = Workspace.open(scratch / "workspace")
    resolve_weights(get_backbone("mobilenet_v2"), 224, "imagenet")  # read once before timing
    for name in args.datasets:
        dataset = ingest(shared_zip(f"{name}.zip"), workspace)
        headline = "test" if "test" in dataset.splits else "val"
        counts = {split: len(dataset.split_entries(split)) for split in dataset.splits}
        print(f"{name}: splits {counts}, headline on {headline}", flush=True)
        for seed in range(args.seeds):
            for strategy in args.strategies:
                if strategy == "seed-recipe":
                    result = seed_recipe(dataset, headline, seed=seed)
                else:
                    result = run_in_own_process(name, strategy, seed, overrides if strategy == "fine-tune" else {},
                                                [(e.source, e.split) for e in dataset.entries])
                row = {"dataset": name, "strategy": strategy, "seed": seed, **result, "overrides": overrides}
                with args.out.open("a") as out:
                    out.write(json.dumps(row, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))
                              + "\n")
                print(f"  seed {seed} {strategy}: {result['headline']['accuracy']:.4f} "
                      f"({result['headline'].get('correct')} of {result['headline']['n']}) on "
                      f"{result['headline']['split']} in {result['seconds']:.1f} s", flush=True)
    print()
    print_table([json.loads(line) for line in args.out.read_text().splitlines() if line.strip()])


if __name__ == "__main__":
    main()
