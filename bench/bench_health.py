"""Data health on real data with planted problems: label noise and near-duplicates across splits.

For each shared dataset the script writes a zip with explicit ``train/`` and ``val/`` folders (the split ingestion
generates for the original), plus planted near-duplicates of training images in ``val/``: resized, re-encoded,
slightly cropped and colour-shifted copies. It ingests that zip and computes the MobileNetV2 224 px embeddings
(the same cache the app uses), then

- flips a share of the training labels (never a planted copy) to another class, and prints precision and recall of
  the flagged images against the flipped ones, for ours (``core.insight.label_issues``) and for confident learning alone
  (cleanlab's default filter on out-of-fold logistic-regression probabilities of the same embeddings), side by side, over seeds;
- runs the near-duplicate search (``core.data.near_duplicates``, as the health check does) and prints how many planted
  copies were found as leakage, per kind, and how many groups hold no planted pair (false groups per 1,000 images);
- prints what the planted pairs measured (hash bits, cosine, thumbnail correlation) against the closest other pairs;
- ingests the planted zip once more without split folders and counts copies that landed in their original's split.

Usage: ``.venv/bin/python bench/bench_health.py [--seeds 3] [--workspace DIR]``. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import time
import zipfile
from pathlib import Path

import numpy as np
from _common import setup_environment, shared_zip

DATASETS = (("sign_language_digits.zip", 0.05, 8), ("hymenoptera.zip", 0.08, 5))  # zip, noise rate, copies/kind
KINDS = ("resized", "re-encoded", "cropped", "colour")


def _copy(image, kind: str, rng):
    from PIL import ImageEnhance

    width, height = image.size
    if kind == "resized":
        return image.resize((max(16, int(width * 0.7)), max(16, int(height * 0.7))))
    if kind == "re-encoded":
        return image  # written below as a JPEG of quality 50
    if kind == "cropped":
        left, top, right, bottom = rng.uniform(0.02, 0.05, 4)
        return image.crop((int(left * width), int(top * height), int(width * (1 - right)),
                           int(height * (1 - bottom))))
    return ImageEnhance.Color(ImageEnhance.Brightness(image).enhance(1.12)).enhance(0.75)


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)  # same bytes, same dataset id


def planted_zip(dataset, path: Path, per_kind: int, *, with_splits: bool, seed: int = 0) -> list[tuple]:
    """Write the dataset's images (class folders, under split folders when ``with_splits``) plus planted copies."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    train = [e for e in dataset.entries if e.split == "train"]
    picks = rng.choice(len(train), per_kind * len(KINDS), replace=False)
    planted = []
    with zipfile.ZipFile(path, "w") as archive:
        for entry in dataset.entries:
            prefix = f"{entry.split}/" if with_splits else ""
            _add(archive, f"{prefix}{entry.label}/{Path(entry.source).stem}.jpg", (dataset.root / entry.file).read_bytes())
        for number, pick in enumerate(picks):
            entry, kind = train[pick], KINDS[number // per_kind]
            with Image.open(dataset.root / entry.file) as image:
                copy = _copy(image.convert("RGB"), kind, rng)
            buffer = io.BytesIO()
            copy.save(buffer, "JPEG", quality=50 if kind == "re-encoded" else 90)
            prefix = "val/" if with_splits else ""
            name = f"{prefix}{entry.label}/zz-copy-{number:03d}.jpg"
            _add(archive, name, buffer.getvalue())
            original = f"{'train/' if with_splits else ''}{entry.label}/{Path(entry.source).stem}.jpg"
            planted.append((original, name, kind))
    return planted


def flip_labels(labels: np.ndarray, candidates: np.ndarray, rate: float, num_classes: int, seed: int):
    rng = np.random.default_rng(seed)
    chosen = rng.choice(candidates, int(round(rate * len(candidates))), replace=False)
    noisy = labels.copy()
    for row in chosen:
        noisy[row] = rng.choice([c for c in range(num_classes) if c != labels[row]])
    return noisy, set(chosen.tolist())


def precision_recall(flagged: np.ndarray, truth: set) -> tuple[float, float, int]:
    rows = set(np.flatnonzero(flagged).tolist())
    hits = len(rows & truth)
    return hits / max(len(rows), 1), hits / max(len(truth), 1), len(rows)


def label_noise(found, classes, rate: float, seeds: int, planted_sources: set) -> None:
    from core.insight.label_issues import confident_learning, find_label_issues, out_of_fold_probabilities

    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[label] for label in found.labels])
    candidates = np.array([row for row, (split, source) in enumerate(zip(found.splits, found.sources, strict=True))
                           if split == "train" and source not in planted_sources])
    print(f"  label noise: {rate:.0%} of {len(candidates)} training images flipped, {len(labels)} images checked")
    print("    seed  flipped | ours: flagged precision recall | confident learning alone: flagged precision "
          "recall")
    totals = {"ours": [], "cl": []}
    for seed in range(seeds):
        noisy, truth = flip_labels(labels, candidates, rate, len(classes), seed)
        started = time.perf_counter()
        shared = out_of_fold_probabilities(found.embeddings, noisy, len(classes), seed=seed)  # the same for both
        ours = precision_recall(find_label_issues(found.embeddings, noisy, len(classes), seed=seed,
                                                  out_of_fold=shared).flagged, truth)
        took = time.perf_counter() - started
        alone = precision_recall(confident_learning(noisy, shared, filter_by="prune_by_noise_rate")[0], truth)
        totals["ours"].append(ours[:2])
        totals["cl"].append(alone[:2])
        print(f"    {seed:>4}  {len(truth):>7} | {ours[2]:>13} {ours[0]:>9.3f} {ours[1]:>6.3f} | "
              f"{alone[2]:>31} {alone[0]:>9.3f} {alone[1]:>6.3f}   ({took:.1f} s)")
    for name, values in totals.items():
        mean = np.mean(values, axis=0)
        print(f"    mean {'ours' if name == 'ours' else 'confident learning alone'}: precision {mean[0]:.3f}, "
              f"recall {mean[1]:.3f}")


def near_duplicates(dataset, found, planted: list[tuple]) -> None:
    from core.data.near_duplicates import find_near_duplicate_groups
    from core.insight.health import image_signatures

    hashes, thumbs = image_signatures(dataset)
    row_of = {entry.file: row for row, entry in enumerate(dataset.entries)}
    rows = [row_of[file] for file in found.files]
    started = time.perf_counter()
    groups = find_near_duplicate_groups([hashes[r] for r in rows], found.labels, found.splits, thumbs[rows],
                                        found.embeddings)
    took = time.perf_counter() - started
    position = {source: row for row, source in enumerate(found.sources)}
    group_of = {row: number for number, group in enumerate(groups) for row in group.rows}
    found_by_kind = dict.fromkeys(KINDS, 0)
    planted_groups = set()
    for original, copy, kind in planted:
        a, b = position.get(original), position.get(copy)
        if a is not None and b is not None and a in group_of and group_of.get(a) == group_of.get(b) \
                and "across_splits" in groups[group_of[a]].kinds:
            found_by_kind[kind] += 1
            planted_groups.add(group_of[a])
    false_groups = len(groups) - len(planted_groups)
    per_kind = ", ".join(f"{kind} {found_by_kind[kind]}/{len(planted) // len(KINDS)}" for kind in KINDS)
    print(f"  near-duplicates across splits: found {sum(found_by_kind.values())} of {len(planted)} planted "
          f"({per_kind}); {len(groups)} groups, {false_groups} without a planted pair = "
          f"{1000 * false_groups / len(found.files):.2f} false groups per 1,000 images ({took:.1f} s)")
    for group in [g for n, g in enumerate(groups) if n not in planted_groups][:5]:
        print("    not planted: " + ", ".join(f"{found.sources[r]} ({found.labels[r]}, {found.splits[r]})"
                                                for r in group.rows))
    measure(found, planted, position, [hashes[r] for r in rows], thumbs[rows])


def measure(found, planted, position, hashes, thumbs) -> None:
    """Hash bits, cosine and thumbnail correlation of the planted pairs, against every other candidate pair."""
    from core.data.near_duplicates import (
        HASH_WITH_EMBEDDING_BITS,
        MIN_COSINE,
        _best_correlation,
        hamming_pairs,
        hash_array,
    )

    packed = hash_array(hashes)
    unit = found.embeddings / np.linalg.norm(found.embeddings, axis=1, keepdims=True)
    for kind in KINDS:
        pairs = [(position[a], position[b]) for a, b, k in planted if k == kind and a in position and b in position]
        first, second = (np.array(column) for column in zip(*pairs, strict=True))
        bits = np.bitwise_count(packed[first] ^ packed[second])
        cosine = np.einsum("pd,pd->p", unit[first], unit[second])
        correlation = _best_correlation(thumbs, first, second)
        print(f"    planted {kind:<10}: hash bits max {bits.max():>2}, cosine min {cosine.min():.3f}, "
              f"thumbnail correlation min {correlation.min():.3f}")
    first, second, _ = hamming_pairs(packed, HASH_WITH_EMBEDDING_BITS)
    copies = {tuple(sorted((position[a], position[b]))) for a, b, _ in planted if a in position and b in position}
    other = np.array([(a, b) not in copies for a, b in zip(first.tolist(), second.tolist(), strict=True)], bool)
    first, second = first[other], second[other]
    close = np.einsum("pd,pd->p", unit[first], unit[second]) >= MIN_COSINE
    correlation = _best_correlation(thumbs, first[close], second[close])
    top = np.sort(correlation)[-3:] if len(correlation) else []
    print(f"    other candidate pairs (hash <= {HASH_WITH_EMBEDDING_BITS} bits, cosine >= {MIN_COSINE}): "
          f"{int(close.sum())}, highest thumbnail correlations {', '.join(f'{v:.3f}' for v in top)}")


def same_split(workspace, dataset, scratch: Path, per_kind: int) -> None:
    from core.data.datasets import ingest

    path = scratch / f"{dataset.id}-nosplit.zip"
    planted = planted_zip(dataset, path, per_kind, with_splits=False, seed=1)
    generated = ingest(path, workspace, val_fraction=0.2, seed=0)
    split = {entry.source: entry.split for entry in generated.entries}
    kept = [split[a] == split[b] for a, b, kind in planted if kind != "cropped"]
    print(f"  generated split: {sum(kept)} of {len(kept)} resized/re-encoded/colour copies in their original's "
          f"split (cropped copies are grouped by the health check, not at ingestion)")


def _reuse(workspace, name: str, size: int):
    """A planted dataset of an earlier run in ``--workspace`` (the same seeded copies), so its embeddings are reused."""
    from core.data.datasets import list_datasets

    return next((d for d in list_datasets(workspace) if d.name == name and len(d.entries) == size), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workspace", default=None, help="reuse a workspace (its embedding cache) between runs")
    args = parser.parse_args()
    scratch = setup_environment()
    from core.data.datasets import ingest
    from core.insight.projection import load_embeddings
    from core.workspace import Workspace

    workspace = Workspace.open(args.workspace or scratch / "workspace")
    for name, rate, per_kind in DATASETS:
        original = ingest(shared_zip(name), workspace)
        path = scratch / f"{original.id}-planted.zip"
        planted = planted_zip(original, path, per_kind, with_splits=True)
        dataset = _reuse(workspace, f"{Path(name).stem}-planted", len(original.entries) + len(planted)) \
            or ingest(path, workspace, name=f"{Path(name).stem}-planted")
        started = time.perf_counter()
        found = load_embeddings(workspace, dataset, "mobilenet_v2", image_size=224)
        print(f"{Path(name).stem}: {len(dataset.entries)} images ({len(planted)} planted copies in val), "
              f"{len(dataset.classes)} classes; embeddings {time.perf_counter() - started:.1f} s (cached after)")
        label_noise(found, list(dataset.classes), rate, args.seeds, {copy for _, copy, _ in planted})
        near_duplicates(dataset, found, planted)
        same_split(workspace, original, scratch, per_kind)


if __name__ == "__main__":
    main()
