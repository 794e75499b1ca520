"""The data health check: likely label mistakes (ranked), near-duplicates, leakage and outliers of a dataset.

It reads the embeddings the training engine caches (``core.insight.projection.load_embeddings``) and the perceptual hashes
stored at ingestion, and returns one JSON-able report. The command line prints its four public fields
(``CHECK_FIELDS``); the Data and Explore pages read the rest (counts, conflicts, thumbnails' files).
"""

from __future__ import annotations

import time

import numpy as np

from core.data.near_duplicates import find_near_duplicate_groups, perceptual_hash, thumbnails
from core.insight.label_issues import find_label_issues, unit_rows
from core.workspace import Workspace

CHECK_FIELDS = ("label_issues", "near_duplicates", "leakage", "outliers")
OUTLIER_THRESHOLD = 4.5  # robust z-score of the similarity to the nearest neighbours, as on the map
OUTLIER_NEIGHBOURS = 5


def outlier_scores(embeddings: np.ndarray, k: int = OUTLIER_NEIGHBOURS) -> np.ndarray:
    """How isolated each row is: robust z-score of its mean cosine similarity to its ``k`` nearest rows."""
    from core.insight.projection import nearest_neighbours

    neighbours = nearest_neighbours(embeddings, k)
    if len(embeddings) < 10 or neighbours.shape[1] == 0:
        return np.zeros(len(embeddings))
    unit = unit_rows(embeddings)
    similarity = np.einsum("nd,nkd->nk", unit, unit[neighbours]).mean(axis=1)
    median = np.median(similarity)
    spread = 1.4826 * np.median(np.abs(similarity - median))
    return np.zeros(len(embeddings)) if spread <= 1e-12 else (median - similarity) / spread


def image_signatures(dataset) -> tuple[list[str], np.ndarray]:
    """Perceptual hash (from the manifest, computed for older datasets) and thumbnails of every entry's copy."""
    from PIL import Image

    hashes, thumbs = [], []
    for entry in dataset.entries:
        with Image.open(dataset.root / entry.file) as image:
            hashes.append(getattr(entry, "phash", "") or perceptual_hash(image))
            thumbs.append(thumbnails(image))
    return hashes, np.stack(thumbs)


def health_report(dataset, found, *, seed: int = 0) -> dict:
    """The health report of ``dataset`` from its embeddings ``found`` (a ``core.insight.projection.EmbeddingSet``).

    Returns:
        A dict with ``label_issues`` (``file, source, label, suggested, score``, most likely first),
        ``near_duplicates`` and ``leakage`` (groups: lists of ``source, split``), ``outliers`` (``source, score``),
        and for the pages ``conflicts`` (groups across classes), ``groups`` (every group with its ``kinds`` and
        ``files``), ``counts`` and ``created_at``.
    """
    classes = list(dataset.classes)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[label] for label in found.labels], dtype=np.int64)
    issues = find_label_issues(found.embeddings, labels, len(classes), seed=seed)
    all_hashes, all_thumbs = image_signatures(dataset)
    row_of = {entry.file: row for row, entry in enumerate(dataset.entries)}
    rows = [row_of[file] for file in found.files]
    groups = find_near_duplicate_groups([all_hashes[r] for r in rows], found.labels, found.splits,
                                        all_thumbs[rows], found.embeddings)
    isolation = outlier_scores(found.embeddings)

    def item(row: int) -> dict:
        return {"source": found.sources[row], "split": found.splits[row]}

    described = [{"kinds": list(group.kinds),
                  "files": [{"file": found.files[r], "source": found.sources[r], "label": found.labels[r],
                             "split": found.splits[r]} for r in group.rows]} for group in groups]
    report = {
        "label_issues": [{"file": found.files[r], "source": found.sources[r], "label": found.labels[r],
                          "suggested": classes[int(issues.suggested[r])], "score": round(float(issues.score[r]), 4)}
                         for r in issues.order],
        "near_duplicates": [[item(r) for r in group.rows] for group in groups],
        "leakage": [[item(r) for r in group.rows] for group in groups if "across_splits" in group.kinds],
        "outliers": [{"source": found.sources[r], "score": round(float(isolation[r]), 2)}
                     for r in np.argsort(-isolation, kind="stable") if isolation[r] > OUTLIER_THRESHOLD],
        "conflicts": [[item(r) for r in group.rows] for group in groups if "conflicting_labels" in group.kinds],
        "groups": described,
        "outlier_files": [found.files[r] for r in np.flatnonzero(isolation > OUTLIER_THRESHOLD)],
        "created_at": time.time(),
    }
    report["counts"] = {"images": len(found.files), "label_issues": len(report["label_issues"]),
                        "near_duplicate_groups": len(groups), "leakage_groups": len(report["leakage"]),
                        "conflict_groups": len(report["conflicts"]), "outliers": len(report["outliers"])}
    return report


def check_dataset(workspace: Workspace, dataset_id: str, backbone: str = "mobilenet_v2", *,
                  image_size: int | None = None, reporter=None) -> dict:
    """Load ``dataset_id``, compute (or reuse) its embeddings and return its health report.

    Raises:
        DatasetError: no such dataset.
        ConfigError: unknown backbone or a size it does not allow.
        WeightsError: the backbone's ImageNet weights are not on this machine.
    """
    from core.data.datasets import load_dataset
    from core.insight.projection import load_embeddings
    from core.models.backbones import get_backbone

    dataset = load_dataset(workspace, dataset_id)
    spec = get_backbone(backbone)
    require_weights(spec, int(image_size or spec.default_size))
    if reporter is not None:
        reporter.stage("features")
    found = load_embeddings(workspace, dataset, spec.name, image_size=image_size, reporter=reporter)
    if reporter is not None:
        reporter.stage("checking")
    report = health_report(dataset, found)
    report.update(dataset_id=dataset.id, backbone=spec.name, image_size=int(image_size or spec.default_size),
                  feature_key=found.key)
    return report


def require_weights(spec, image_size: int) -> None:
    """WeightsError (without trying a download) when ``spec``'s ImageNet weights at ``image_size`` are missing."""
    from core.models.weights import resolve_weights, weights_available

    if not weights_available(spec, image_size):
        from core.errors import WeightsError
        from core.models.weights import configured_weights_dir, keras_cache_dir

        folder = configured_weights_dir(None) or keras_cache_dir()
        raise WeightsError(f"No ImageNet weights for {spec.display_name} ({spec.name}) at {image_size} px: "
                           f"{spec.weights_file(image_size)} is not in {folder}. Put the file there (or pick "
                           f"a backbone whose weights are on this machine); the check needs pretrained features.")
    resolve_weights(spec, image_size)
