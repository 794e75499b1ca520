"""The embedding map: a dataset seen through a backbone's eyes, in 2-D, with likely label mistakes marked.

Embeddings come from the same cache the training engine fills (``core.models.features``, same key), so a map
after a run costs nothing more and a run after a map skips its feature extraction. The projection is
PCA (scikit-learn, signs fixed so the same input always draws the same picture) or, on request, t-SNE
from scikit-learn. A point is flagged when most of its nearest neighbours (cosine) carry another
label, when it is an outlier (far from every other image), or when a chosen run's model gets it wrong.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from core.config import DEFAULT_RESIZE
from core.errors import ConfigError
from core.workspace import Workspace

METHODS = ("pca", "tsne")
MAP_COLUMNS = ("file", "label", "split", "x", "y", "flagged", "reason", "neighbour_agreement")


@dataclass(frozen=True)
class EmbeddingSet:
    """A dataset's embeddings in manifest order (split by split), with what identifies each row.

    Attributes:
        key: The ``core.models.features`` cache key they were read from.
        files: Manifest ``file`` of each row (relative to the dataset folder).
        sources: Original name of each image in the upload.
        labels: Label of each row.
        splits: Split of each row.
        embeddings: float32 array (N, D).
    """

    key: str
    files: tuple[str, ...]
    sources: tuple[str, ...]
    labels: tuple[str, ...]
    splits: tuple[str, ...]
    embeddings: np.ndarray


def load_embeddings(workspace: Workspace, dataset, backbone: str = "mobilenet_v2", *, image_size: int | None = None,
                    resize: str = DEFAULT_RESIZE, weights: str = "imagenet", batch_size: int = 32,
                    reporter=None) -> EmbeddingSet:
    """The cached embeddings of ``dataset``, computed (and cached) first when missing.

    Args:
        workspace: Holds the feature cache.
        dataset: A ``core.data.datasets.Dataset``.
        backbone: Registry name of the base.
        image_size: Input side; default the backbone's own.
        resize: ``squash``, ``crop`` or ``pad``, as in training.
        weights: ``imagenet`` or ``none``.
        batch_size: Images per forward pass when computing.
        reporter: Optional ``core.progress.RunReporter`` for progress and Stop while computing.

    Returns:
        An ``EmbeddingSet``.

    Raises:
        ConfigError: an image size the backbone does not allow.
        WeightsError: ImageNet weights asked for and not available.
    """
    from core.config import TrainConfig
    from core.models.features import cached_features, extract_features
    from core.models.plan import plan_run

    plan = plan_run(TrainConfig(dataset_id=dataset.id, backbone=backbone, image_size=image_size, resize=resize,
                                weights=weights), workspace, dataset=dataset)
    spec, size, resolved, key = plan.spec, plan.image_size, plan.weights, plan.feature_key
    features = cached_features(workspace, key)
    if features is None:
        from core.models.classifier import build_classifier, feature_extractor

        model = build_classifier(spec, image_size=size, num_classes=max(2, len(dataset.classes)), weights=resolved)
        features = extract_features(workspace, key, feature_extractor(model), dataset, image_size=size,
                                    resize=resize, batch_size=batch_size, reporter=reporter,
                                    meta={"backbone": spec.name, "weights": resolved.description,
                                          "weights_fingerprint": resolved.fingerprint})
    entries = [entry for split in dataset.splits for entry in dataset.split_entries(split)]
    arrays = [np.asarray(features[split], dtype=np.float32) for split in dataset.splits]
    return EmbeddingSet(key=key, files=tuple(e.file for e in entries), sources=tuple(e.source for e in entries),
                        labels=tuple(e.label for e in entries), splits=tuple(e.split for e in entries),
                        embeddings=np.concatenate(arrays) if arrays else np.zeros((0, 0), np.float32))


def project_pca(embeddings: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Principal-component coordinates (N, n_components); each axis' sign makes its largest loading positive.

    scikit-learn's PCA from the covariance matrix (D x D): about ten times faster than an SVD of the whole
    (N, D) matrix at 20,000 x 1,280, with the same coordinates.
    """
    from sklearn.decomposition import PCA

    data = np.asarray(embeddings, dtype=np.float64)
    result = np.zeros((len(data), n_components))
    if len(data) < 2 or data.ndim != 2 or data.shape[1] == 0:
        return result
    count = min(n_components, *data.shape)
    pca = PCA(n_components=count, svd_solver="covariance_eigh").fit(data)
    components = pca.components_
    signs = np.sign(components[np.arange(count), np.abs(components).argmax(axis=1)])
    signs[signs == 0] = 1.0
    result[:, :count] = (data - pca.mean_) @ (components * signs[:, None]).T
    return result


def project_tsne(embeddings: np.ndarray, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """t-SNE coordinates (N, 2), seeded, initialised from PCA; fine for up to a few thousand points.

    Raises:
        ConfigError: fewer than 5 points (t-SNE needs a neighbourhood).
    """
    from sklearn.manifold import TSNE

    data = np.asarray(embeddings, dtype=np.float64)
    if len(data) < 5:
        raise ConfigError(f"t-SNE needs at least 5 images; got {len(data)}. Use PCA for tiny datasets.")
    perplexity = float(min(perplexity, (len(data) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                learning_rate="auto").fit_transform(data)


@dataclass(frozen=True)
class Neighbours:
    """Each row's nearest other rows by cosine similarity, most similar first.

    Attributes:
        indices: int (N, k) row numbers.
        similarity: float (N, k) cosine similarity to each of them.
    """

    indices: np.ndarray
    similarity: np.ndarray


def find_neighbours(embeddings: np.ndarray, k: int = 5) -> Neighbours:
    """The ``k`` most cosine-similar other rows of every row (brute force, scikit-learn, in chunks)."""
    from sklearn.neighbors import NearestNeighbors

    data = np.asarray(embeddings, dtype=np.float32)
    k = min(k, len(data) - 1)
    if k < 1:
        return Neighbours(np.zeros((len(data), 0), dtype=np.int64), np.zeros((len(data), 0)))
    finder = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(data)
    distances, indices = finder.kneighbors()  # no query: each row's neighbours leave the row itself out
    return Neighbours(indices.astype(np.int64), 1.0 - distances.astype(np.float64))


def nearest_neighbours(embeddings: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices (N, k) of each row's ``k`` most cosine-similar other rows."""
    return find_neighbours(embeddings, k).indices


def flag_mislabelled(embeddings: np.ndarray, labels, *, k: int = 5, min_disagreement: float = 0.6,
                     neighbours: Neighbours | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Points whose nearest neighbours mostly carry another label.

    Args:
        embeddings: (N, D) array.
        labels: N labels.
        k: Neighbours looked at.
        min_disagreement: Share of neighbours with another label that flags a point (0.6: 3 of 5).
        neighbours: From ``find_neighbours(embeddings, k)`` when already computed.

    Returns:
        ``(flagged bool (N,), neighbour_agreement float (N,), reason str per point)``.
    """
    labels = np.asarray(labels, dtype=object)
    indices = (neighbours or find_neighbours(embeddings, k)).indices
    if indices.shape[1] == 0:
        return np.zeros(len(labels), bool), np.ones(len(labels)), [""] * len(labels)
    neighbour_labels = labels[indices]
    agreement = (neighbour_labels == labels[:, None]).mean(axis=1)
    flagged = (1.0 - agreement) >= min_disagreement - 1e-9
    reasons = []
    for i, is_flagged in enumerate(flagged):
        if not is_flagged:
            reasons.append("")
            continue
        others = [name for name in neighbour_labels[i] if name != labels[i]]
        common = max(sorted(set(others)), key=others.count)
        reasons.append(f"{len(others)} of {indices.shape[1]} nearest neighbours are labelled '{common}'")
    return flagged, agreement, reasons


def flag_outliers(embeddings: np.ndarray, *, k: int = 5, threshold: float = 4.5,
                  neighbours: Neighbours | None = None) -> tuple[np.ndarray, list[str]]:
    """Isolated points: their ``k`` nearest neighbours are far less similar than for a typical point.

    The mean cosine similarity to the ``k`` nearest neighbours is compared with its median over the dataset, in
    units of the median absolute deviation (a robust z-score); ``threshold`` 4.5 marks only clear outliers, such
    as a "this image could not be found" placeholder among photographs.

    Args:
        neighbours: From ``find_neighbours(embeddings, k)`` when already computed.

    Returns:
        ``(flagged bool (N,), reason str per point)``.
    """
    count = len(embeddings)
    found = neighbours or find_neighbours(embeddings, k)
    if count < 10 or found.indices.shape[1] == 0:
        return np.zeros(count, bool), [""] * count
    similarity = found.similarity.mean(axis=1)
    median = np.median(similarity)
    spread = 1.4826 * np.median(np.abs(similarity - median))
    if spread <= 1e-12:
        return np.zeros(count, bool), [""] * count
    score = (median - similarity) / spread
    flagged = score > threshold
    return flagged, [f"outlier: unlike any other image (similarity to its nearest neighbours "
                     f"{similarity[i]:.2f}, typical {median:.2f})" if flagged[i] else "" for i in range(count)]


def run_mistakes(workspace: Workspace, run_id: str, dataset) -> dict[str, str]:
    """``{manifest file: reason}`` for the images of ``dataset`` that run ``run_id``'s model gets wrong.

    Raises:
        ConfigError: the run was trained on another dataset (its classes may differ).
        RunError: unknown run or a run without a model.
    """
    from core.insight.evaluation import evaluate_run
    from core.models.prediction import Predictor
    from core.runs import load_run

    trained_on = load_run(workspace, run_id)["config"]["dataset_id"]
    if trained_on != dataset.id:
        raise ConfigError(f"Run {run_id} was trained on dataset {trained_on}, not {dataset.id}; pick a run of "
                          f"this dataset to mark the images its model gets wrong.")
    predictor = Predictor.from_run(workspace, run_id)
    by_path = {str(dataset.root / entry.file): entry.file for entry in dataset.entries}
    wrong = {}
    for split in dataset.splits:
        result = evaluate_run(workspace, run_id, split, predictor=predictor)
        for record in result.mistakes():
            wrong[by_path.get(record["file"], record["file"])] = (
                f"the model predicts '{record['predicted']}' ({record['confidence']:.0%})")
    return wrong


def build_embedding_map(workspace: Workspace, dataset, backbone: str = "mobilenet_v2", *,
                        image_size: int | None = None, resize: str = DEFAULT_RESIZE, weights: str = "imagenet",
                        method: str = "pca", k: int = 5, min_disagreement: float = 0.6, run_id: str | None = None,
                        seed: int = 0, reporter=None):
    """The embedding map of ``dataset`` as a pandas DataFrame.

    Columns: ``file, label, split, x, y, flagged, reason, neighbour_agreement`` (see ``MAP_COLUMNS``) plus
    ``source`` (original name) and ``path`` (absolute path of the image, for thumbnails).

    ``reporter`` (a ``core.progress.RunReporter``, as in a map job) gets the stages ``features`` (images embedded
    of images, when they are not cached yet), ``projecting``, ``neighbours`` and ``run mistakes``; Stop ends the
    work between two of them (or two batches of images) with ``core.progress.StopRequested``.

    Raises:
        ConfigError: unknown ``method``, a bad image size, or a run of another dataset.
        WeightsError: ImageNet weights asked for and not available.
    """
    import pandas as pd

    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not one of {', '.join(METHODS)}.")
    _stage(reporter, "features")
    found = load_embeddings(workspace, dataset, backbone, image_size=image_size, resize=resize, weights=weights,
                            reporter=reporter)
    _stage(reporter, "projecting", method=method)
    coords = project_tsne(found.embeddings, seed=seed) if method == "tsne" else project_pca(found.embeddings)
    _stage(reporter, "neighbours")
    neighbours = find_neighbours(found.embeddings, k)  # once, for both kinds of flag
    flagged, agreement, reasons = flag_mislabelled(found.embeddings, found.labels, k=k,
                                                   min_disagreement=min_disagreement, neighbours=neighbours)
    isolated, why = flag_outliers(found.embeddings, k=k, neighbours=neighbours)
    reasons = ["; ".join(filter(None, pair)) for pair in zip(reasons, why, strict=True)]
    flagged = flagged | isolated
    if run_id:
        _stage(reporter, "run mistakes", run_id=run_id)
        wrong = run_mistakes(workspace, run_id, dataset)
        for i, file in enumerate(found.files):
            if file in wrong:
                flagged[i] = True
                reasons[i] = "; ".join(filter(None, [reasons[i], wrong[file]]))
    return pd.DataFrame({
        "file": found.files, "label": found.labels, "split": found.splits, "x": coords[:, 0], "y": coords[:, 1],
        "flagged": flagged.astype(bool), "reason": reasons, "neighbour_agreement": agreement,
        "source": found.sources, "path": [str(dataset.root / file) for file in found.files],
    })


def _stage(reporter, name: str, **fields) -> None:
    """Enter stage ``name`` of a map job (nothing without a reporter); Stop pressed before it ends the work."""
    if reporter is None:
        return
    from core.progress import check_stop

    check_stop(reporter)
    reporter.stage(name, **fields)


def embeddings_csv(found: EmbeddingSet) -> bytes:
    """CSV bytes: ``file, label, split, source, f0..fN`` with one row per image (``source``: the image's path in
    the user's upload; ``file``: its stored copy in the dataset folder)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "label", "split", "source", *(f"f{i}" for i in range(found.embeddings.shape[1]))])
    rows = zip(found.files, found.labels, found.splits, found.sources, strict=True)
    for row, (file, label, split, source) in enumerate(rows):
        writer.writerow([file, label, split, source, *(repr(float(v)) for v in found.embeddings[row])])
    return buffer.getvalue().encode("utf-8")


def embeddings_npz(found: EmbeddingSet) -> bytes:
    """``.npz`` bytes with arrays ``embeddings`` (N, D) float32, ``files``, ``labels``, ``splits``, ``sources`` (str)."""
    buffer = io.BytesIO()
    np.savez(buffer, embeddings=found.embeddings.astype(np.float32), files=np.array(found.files, dtype=str),
             labels=np.array(found.labels, dtype=str), splits=np.array(found.splits, dtype=str),
             sources=np.array(found.sources, dtype=str))
    return buffer.getvalue()
