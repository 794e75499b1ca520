"""Train/validation splits, duplicate groups and the dataset summary, all keyed by content hash.

The generated split is stratified (each class keeps about ``val_fraction`` of its images in
validation), seeded and reproducible (the same files and seed give the same split whatever their
order), and grouped: byte-identical images always land in the same split, so a duplicate can
never leak from training into validation.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError

SPLIT_ORDER = ("train", "val", "test")
# A test split is carved from an upload without val/ or test/ once every class has this many images: then the
# headline accuracy can come from images that chose nothing. Smaller data gets a cross-validated estimate instead.
TEST_FRACTION = 0.15
MIN_CLASS_IMAGES_FOR_TEST = 100


@dataclass(frozen=True)
class SplitItem:
    """What the splitter needs to know of one image."""

    label: str
    sha256: str
    split: str | None  # given by the upload, or None
    group: str | None = None  # items with the same group (e.g. near-duplicates) share a split; default sha256

    @property
    def group_key(self) -> str:
        return self.group or self.sha256


def check_val_fraction(val_fraction: float) -> float:
    """``val_fraction`` as a float strictly between 0 and 1, else ConfigError."""
    try:
        value = float(val_fraction)
    except (TypeError, ValueError):
        value = -1.0
    if not 0.0 < value < 1.0:
        raise ConfigError(
            f"val_fraction={val_fraction!r} must be between 0 and 1 (exclusive), e.g. 0.2 for 20% "
            f"of each class in validation."
        )
    return value


def assign_splits(items: list[SplitItem], val_fraction: float = 0.2, seed: int = 0) -> list[str]:
    """The split of every item: given splits are kept; validation (and test) are generated when none is given.

    When the upload has no validation images, the images without a split (or in ``train``) are
    divided into ``train`` and ``val`` by a stratified, seeded split grouped by content hash. When it has
    neither validation nor test images and every class has at least ``MIN_CLASS_IMAGES_FOR_TEST`` images,
    ``TEST_FRACTION`` of each class is first set aside as ``test`` (stratified, seeded, grouped the same way).

    Args:
        items: one per image, in any order.
        val_fraction: share of each class that goes to validation.
        seed: random seed; the same seed gives the same split.

    Returns:
        ``"train"``, ``"val"`` or ``"test"`` for each item, in the order of ``items``.
    """
    val_fraction = check_val_fraction(val_fraction)
    has_val = any(item.split == "val" for item in items)
    splits = [item.split or "train" for item in items]
    if has_val:
        return splits
    candidates = [i for i, item in enumerate(items) if item.split in (None, "train")]
    if should_carve_test(items):
        test = set(_grouped_validation(items, candidates, TEST_FRACTION, seed, salt=1))
        for index in test:
            splits[index] = "test"
        candidates = [i for i in candidates if i not in test]
        val_fraction = min(0.9, val_fraction / (1.0 - TEST_FRACTION))
    for index in _grouped_validation(items, candidates, val_fraction, seed):
        splits[index] = "val"
    return splits


def should_carve_test(items: list[SplitItem]) -> bool:
    """True when the upload gives no val/test split and every class is large enough to spare a test split."""
    if any(item.split in ("val", "test") for item in items):
        return False
    counts = Counter(item.label for item in items)
    return bool(counts) and min(counts.values()) >= MIN_CLASS_IMAGES_FOR_TEST


def holdout_indices(labels, groups, fraction: float, seed: int = 0) -> list[int]:
    """A stratified, seeded, content-grouped holdout from one split (indices into ``labels``).

    Used to choose epochs without touching the split a headline accuracy comes from.
    """
    items = [SplitItem(str(label), str(group), None) for label, group in zip(labels, groups, strict=True)]
    return sorted(_grouped_validation(items, list(range(len(items))), fraction, seed, salt=2))


def _grouped_validation(items, candidates, val_fraction, seed, salt: int = 0) -> list[int]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index in candidates:
        groups[items[index].group_key].append(index)
    by_class: dict[str, list[str]] = defaultdict(list)
    for sha, members in groups.items():
        counts = Counter(items[i].label for i in members)
        label = min(counts, key=lambda name: (-counts[name], name))
        by_class[label].append(sha)
    chosen = []
    for label, shas in sorted(by_class.items()):
        shas.sort()
        size = sum(len(groups[sha]) for sha in shas)
        target = max(1, round(val_fraction * size)) if len(shas) >= 2 else 0
        rng = np.random.default_rng([int(seed), zlib.crc32(label.encode("utf-8"))] + ([salt] if salt else []))
        taken, in_train = 0, len(shas)
        for position in rng.permutation(len(shas)):
            if taken >= target or in_train <= 1:
                break
            members = groups[shas[position]]
            chosen.extend(members)
            taken += len(members)
            in_train -= 1
    return chosen


def find_duplicate_groups(records: list[dict]) -> list[dict]:
    """Groups of byte-identical images, each tagged with what makes it a problem.

    Args:
        records: dicts with ``sha256``, ``label``, ``split``, ``source`` and ``file``.

    Returns:
        One dict per hash seen more than once: ``sha256``, ``kinds`` (any of ``"within_class"``,
        ``"conflicting_labels"``, ``"across_splits"``) and ``files`` (source, label, split, file).
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[record["sha256"]].append(record)
    result = []
    for sha, members in sorted(groups.items()):
        if len(members) < 2:
            continue
        labels = Counter(m["label"] for m in members)
        kinds = []
        if len({(m["label"], m["split"]) for m in members}) < len(members):
            kinds.append("within_class")  # copies with the same label in the same split
        if len(labels) > 1:
            kinds.append("conflicting_labels")
        if len({m["split"] for m in members}) > 1:
            kinds.append("across_splits")
        files = [{key: m[key] for key in ("source", "label", "split", "file")} for m in members]
        result.append({"sha256": sha, "kinds": kinds, "files": sorted(files, key=lambda f: f["source"])})
    return result


def _stats(values: list[int]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    return {"min": int(array.min()), "max": int(array.max()), "mean": round(float(array.mean()), 1),
            "median": float(np.median(array))}


def build_summary(records: list[dict], *, layout: str, skipped: list[dict], rejected: list[dict],
                  val_fraction: float, seed: int, generated_split: bool, test_carved: bool = False) -> dict:
    """The JSON-able summary of a dataset, with the warnings a user should read before training.

    Args:
        records: one dict per usable image (``label``, ``split``, ``sha256``, ``width``,
            ``height``, ``gray``, ``source``, ``file``).
        layout: layout kind found in the upload.
        skipped: junk files skipped (``file``, ``reason``).
        rejected: unusable files (``file``, ``reason``).
        val_fraction: validation share used when ``generated_split``.
        seed: seed of the generated split.
        generated_split: True when the validation split was generated rather than given.
        test_carved: True when a test split was set aside from an upload without one.
    """
    classes = sorted({r["label"] for r in records})
    present = [s for s in SPLIT_ORDER if any(r["split"] == s for r in records)]
    counts = {split: {name: 0 for name in classes} for split in present}
    for record in records:
        counts[record["split"]][record["label"]] += 1
    totals = {name: sum(counts[s][name] for s in present) for name in classes}
    imbalance = max(totals.values()) / max(min(totals.values()), 1)
    duplicates = find_duplicate_groups(records)
    summary = {
        "classes": classes, "counts": counts, "class_totals": totals, "total_images": len(records),
        "imbalance_ratio": round(imbalance, 2), "layout": layout,
        "image_sizes": {"width": _stats([r["width"] for r in records]),
                        "height": _stats([r["height"] for r in records])},
        "grayscale_fraction": round(sum(r["gray"] for r in records) / len(records), 3), "rejected": rejected, "skipped": skipped,
        "duplicates": duplicates, "generated_split": generated_split, "test_carved": test_carved,
        "test_fraction": TEST_FRACTION if test_carved else None,
        "val_fraction": val_fraction if generated_split else None, "seed": seed,
    }
    summary["warnings"] = _warnings(summary)
    return summary


def _warnings(summary: dict) -> list[dict]:
    found = []

    def warn(code: str, message: str) -> None:
        found.append({"code": code, "message": message})

    for name, total in summary["class_totals"].items():
        if total < 10:
            warn("small_class", f"Class '{name}' has only {total} images; aim for at least 10 (better 50+).")
    if summary["imbalance_ratio"] > 3:
        warn("imbalance", f"The largest class has {summary['imbalance_ratio']:.1f} times as many images as "
                          f"the smallest; accuracy will favour the large classes. Add images to small classes.")
    for kind, text in (("within_class", "groups of identical images inside a class"),
                       ("conflicting_labels", "images that appear in more than one class (conflicting labels)"),
                       ("across_splits", "images that appear in more than one split (leakage: validation "
                                         "scores will be too optimistic)")):
        groups = [g for g in summary["duplicates"] if kind in g["kinds"]]
        if groups:
            code = {"within_class": "duplicates", "across_splits": "leakage"}.get(kind, kind)
            warn(code, f"{len(groups)} {text}.")
    if summary["grayscale_fraction"] >= 0.95:
        share = summary["grayscale_fraction"]
        warn("grayscale", f"{'All' if share == 1 else f'{share:.0%} of the'} images are grayscale; "
                          f"pretrained backbones expect colour but work on gray copied to 3 channels.")
    for split in ("val", "test"):
        missing = [c for c, n in summary["counts"].get(split, {}).items() if n == 0]
        if missing:
            warn(f"missing_in_{split}", f"No {split} images for class(es) {', '.join(missing)}.")
    archives = [item["file"] for item in summary["skipped"] if item["reason"].startswith("archive inside")]
    if archives:
        warn("nested_archive", f"{len(archives)} archive(s) inside the upload were skipped, not extracted "
                               f"(e.g. '{archives[0]}'); extract them and upload their content if needed.")
    if summary.get("test_carved"):
        test_total = sum(summary["counts"].get("test", {}).values())
        warn("test_split", f"A test split was set aside ({summary['test_fraction']:.0%} of each class, "
                           f"{test_total} images). It is never used to choose anything, so the headline accuracy "
                           f"of every run comes from it.")
    if summary["rejected"]:
        warn("rejected", f"{len(summary['rejected'])} files could not be used (see the rejected files).")
    return found
