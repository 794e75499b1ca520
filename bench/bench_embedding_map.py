"""The embedding map's analysis (neighbours, both kinds of flag, PCA) at 20,000 generated feature vectors: the
code path before (NumPy: k-nearest-neighbours computed once per flag with a full argsort of every similarity row,
PCA by an SVD of the whole matrix), kept below for comparison, against ``core.insight.projection`` now (neighbours once
with scikit-learn, PCA from the covariance). Both run side by side in one process; prints figures, asserts nothing.

Usage: ``.venv/bin/python bench/bench_embedding_map.py [--images 20000] [--dim 1280]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.insight.projection import find_neighbours, flag_mislabelled, flag_outliers, project_pca  # noqa: E402


def old_nearest_neighbours(embeddings: np.ndarray, k: int = 5, chunk: int = 1024) -> np.ndarray:
    """The code path before: cosine similarity in float64, a stable argsort of every full row."""
    data = np.asarray(embeddings, dtype=np.float64)
    k = min(k, len(data) - 1)
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    unit = data / np.where(norms > 0, norms, 1.0)
    found = np.empty((len(data), k), dtype=np.int64)
    for start in range(0, len(data), chunk):
        similarity = unit[start:start + chunk] @ unit.T
        rows = np.arange(similarity.shape[0])
        similarity[rows, start + rows] = -np.inf
        found[start:start + chunk] = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return found


def old_project_pca(embeddings: np.ndarray, n_components: int = 2) -> np.ndarray:
    """The code path before: an SVD of the whole centred (N, D) matrix."""
    data = np.asarray(embeddings, dtype=np.float64)
    centred = data - data.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    count = min(n_components, len(singular))
    components = components[:count]
    signs = np.sign(components[np.arange(count), np.abs(components).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return centred @ (components * signs[:, None]).T


def clustered(images: int, dim: int, classes: int = 20, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Non-negative clustered vectors, like pooled ReLU features, in float32 as the feature cache stores them."""
    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, 1.0, size=(classes, dim))
    labels = rng.integers(0, classes, images)
    points = np.abs(centres[labels] + rng.normal(0.0, 0.6, size=(images, dim)))
    return points.astype(np.float32), [f"c{label}" for label in labels]


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    data, labels = clustered(args.images, args.dim)
    print(f"{args.images:,} x {args.dim} float32 vectors, k={args.k}")
    # Imports and first calls (scikit-learn's set-up) outside the timings, for both paths alike.
    warm, _ = clustered(200, args.dim, seed=1)
    old_nearest_neighbours(warm, args.k), old_project_pca(warm), find_neighbours(warm, args.k), project_pca(warm)

    # Before: flag_mislabelled and flag_outliers each computed the neighbours.
    old_knn_s, old_indices = timed(lambda: old_nearest_neighbours(data, args.k))
    old_pca_s, old_coords = timed(lambda: old_project_pca(data))
    old_total = 2 * old_knn_s + old_pca_s
    # After: neighbours once, both flags from them, PCA from the covariance.
    new_knn_s, found = timed(lambda: find_neighbours(data, args.k))
    flags_s, _ = timed(lambda: (flag_mislabelled(data, labels, k=args.k, neighbours=found),
                                flag_outliers(data, k=args.k, neighbours=found)))
    new_pca_s, new_coords = timed(lambda: project_pca(data))
    new_total = new_knn_s + flags_s + new_pca_s

    same_rows = float(np.mean((np.sort(old_indices, axis=1) == np.sort(found.indices, axis=1)).all(axis=1)))
    pca_diff = float(np.max(np.abs(old_coords - new_coords)) / np.max(np.abs(old_coords)))
    print("| step | before (s) | after (s) | ratio |")
    print("|---|---|---|---|")
    print(f"| nearest neighbours, once | {old_knn_s:.1f} | {new_knn_s:.1f} | {old_knn_s / new_knn_s:.1f}x |")
    print(f"| nearest neighbours for both flags | {2 * old_knn_s:.1f} | {new_knn_s:.1f} | "
          f"{2 * old_knn_s / new_knn_s:.1f}x |")
    print(f"| PCA to 2-D | {old_pca_s:.2f} | {new_pca_s:.2f} | {old_pca_s / new_pca_s:.1f}x |")
    print(f"| neighbours + flags + PCA | {old_total:.1f} | {new_total:.1f} | {old_total / new_total:.1f}x |")
    print(f"same neighbour sets: {same_rows:.2%} of rows; largest PCA coordinate difference "
          f"{pca_diff:.1e} of the coordinate range")


if __name__ == "__main__":
    main()
