"""The embedding map: projection shape and determinism, and planted label mistakes are flagged."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data.datasets import ingest
from core.insight.projection import (
    MAP_COLUMNS,
    build_embedding_map,
    flag_mislabelled,
    flag_outliers,
    project_pca,
    project_tsne,
)

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 50), "blue": (30, 50, 220)}


def _clusters(seed: int = 0, per_class: int = 15):
    rng = np.random.default_rng(seed)
    centres = {name: rng.normal(size=32) * 5 for name in COLOURS}
    labels = [name for name in COLOURS for _ in range(per_class)]
    points = np.stack([centres[name] + rng.normal(size=32) for name in labels])
    return points, labels


def test_pca_projection_is_n_by_2_and_identical_for_the_same_input():
    points, _ = _clusters()
    first = project_pca(points)
    assert first.shape == (len(points), 2)
    np.testing.assert_array_equal(first, project_pca(points.copy()))
    assert np.var(first[:, 0]) >= np.var(first[:, 1]) > 0


def test_pca_signs_do_not_flip_when_the_rows_are_shuffled():
    points, _ = _clusters()
    order = np.random.default_rng(1).permutation(len(points))
    np.testing.assert_allclose(project_pca(points)[order], project_pca(points[order]), atol=1e-9)


def test_tsne_projection_is_seeded():
    points, _ = _clusters(per_class=8)
    first = project_tsne(points, seed=3)
    assert first.shape == (len(points), 2)
    np.testing.assert_allclose(first, project_tsne(points, seed=3))


def test_a_point_among_another_class_is_flagged_and_its_neighbours_named():
    points, labels = _clusters()
    labels[labels.index("red")] = "blue"  # a red point filed as blue
    flagged, agreement, reasons = flag_mislabelled(points, labels, k=5)
    assert np.flatnonzero(flagged).tolist() == [0]
    assert agreement[0] == 0.0
    assert "'red'" in reasons[0]


def test_an_image_unlike_all_others_is_flagged_as_an_outlier():
    points, _ = _clusters()
    odd = np.random.default_rng(5).normal(size=(1, 32)) * 5
    flagged, reasons = flag_outliers(np.concatenate([points, odd]), k=5)
    assert np.flatnonzero(flagged).tolist() == [len(points)]
    assert reasons[-1].startswith("outlier")


def _planted_folder(root, per_class: int = 15, size: int = 48):
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = np.clip(np.array(colour) + rng.integers(-25, 25, size=(size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{name}_{index:02d}.png")
    planted = np.clip(np.array(COLOURS["red"]) + rng.integers(-25, 25, size=(size, size, 3)), 0, 255)
    Image.fromarray(planted.astype(np.uint8)).save(root / "blue" / "really_red.png")
    return root


def test_planted_mislabelled_image_is_flagged_through_the_cache(workspace, tmp_path, keras_home):
    dataset = ingest(_planted_folder(tmp_path / "colours"), workspace, val_fraction=0.2)
    frame = build_embedding_map(workspace, dataset, "mobilenet_v2", image_size=224, weights="imagenet")
    assert tuple(frame.columns[:len(MAP_COLUMNS)]) == MAP_COLUMNS
    assert len(frame) == 46
    flagged = frame[frame.flagged]
    assert flagged.source.tolist() == ["blue/really_red.png"]
    assert "'red'" in flagged.reason.iloc[0]


def test_unknown_projection_method_is_refused(workspace, tmp_path):
    from core.errors import ConfigError
    from tests.factories import make_tiny_dataset

    dataset = make_tiny_dataset(workspace, tmp_path, per_class=3, size=32)
    with pytest.raises(ConfigError, match="umap"):
        build_embedding_map(workspace, dataset, method="umap", weights="none")
