"""The embedding map's faster path gives what the NumPy path gave, and computes the neighbours once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from core.insight import projection
from core.insight.projection import build_embedding_map, find_neighbours, project_pca
from tests.factories import make_tiny_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_embedding_map import clustered, old_nearest_neighbours, old_project_pca  # noqa: E402


def test_neighbours_are_those_of_the_numpy_path_with_their_similarities():
    data, _ = clustered(400, 64)
    found = find_neighbours(data, 5)
    np.testing.assert_array_equal(found.indices, old_nearest_neighbours(data, 5))
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    expected = np.einsum("nd,nkd->nk", unit.astype(np.float64), unit[found.indices].astype(np.float64))
    np.testing.assert_allclose(found.similarity, expected, atol=1e-5)
    assert (np.diff(found.similarity, axis=1) <= 1e-6).all()  # most similar first


def test_a_row_is_never_its_own_neighbour_even_beside_a_duplicate():
    data, _ = clustered(50, 16)
    data[7] = data[3]
    indices = find_neighbours(data, 3).indices
    assert all(row not in indices[row] for row in range(len(data)))
    assert indices[3][0] == 7 and indices[7][0] == 3


def test_pca_gives_the_svd_coordinates():
    data, _ = clustered(300, 48)
    np.testing.assert_allclose(project_pca(data), old_project_pca(data), atol=1e-8)


def test_the_map_computes_the_neighbours_once(workspace, tmp_path, monkeypatch):
    dataset = make_tiny_dataset(workspace, tmp_path, per_class=5, size=32)
    calls = []
    real = projection.find_neighbours
    monkeypatch.setattr(projection, "find_neighbours", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    frame = build_embedding_map(workspace, dataset, image_size=96, weights="none")
    assert len(frame) == len(dataset.entries)
    assert len(calls) == 1
