"""Feature export: CSV / NumPy downloads and the CLI hold exactly the cached embeddings."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import numpy as np

from core.insight.projection import embeddings_csv, embeddings_npz, load_embeddings
from core.models.features import cached_features
from tests.factories import make_tiny_dataset


def test_exported_embeddings_match_the_cache_and_the_cli(workspace, tmp_path):
    dataset = make_tiny_dataset(workspace, tmp_path, per_class=3, size=32)
    found = load_embeddings(workspace, dataset, "mobilenet_v2", image_size=96, weights="none")
    cache = cached_features(workspace, found.key)
    expected = np.concatenate([np.asarray(cache[split]) for split in dataset.splits])
    entries = [e for split in dataset.splits for e in dataset.split_entries(split)]

    archive = np.load(io.BytesIO(embeddings_npz(found)))
    np.testing.assert_array_equal(archive["embeddings"], expected)
    assert archive["files"].tolist() == [e.file for e in entries]
    assert archive["labels"].tolist() == [e.label for e in entries]
    assert archive["splits"].tolist() == [e.split for e in entries]

    rows = list(csv.reader(io.StringIO(embeddings_csv(found).decode())))
    assert rows[0][:5] == ["file", "label", "split", "source", "f0"] and len(rows[0]) == 4 + expected.shape[1]
    np.testing.assert_array_equal(np.array([r[4:] for r in rows[1:]], dtype=np.float32), expected)
    assert [r[3] for r in rows[1:]] == [e.source for e in entries] == archive["sources"].tolist()

    out = tmp_path / "features.npz"
    done = subprocess.run([sys.executable, "-m", "core", "embeddings", dataset.id, "--image-size", "96",
                           "--weights", "none", "--out", str(out), "--workspace", str(workspace.root)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(out)["embeddings"], expected)


def test_cli_embeddings_unknown_dataset_exits_2_with_one_error_line(workspace):
    done = subprocess.run([sys.executable, "-m", "core", "embeddings", "nope", "--workspace", str(workspace.root)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: No dataset 'nope'") and done.stderr.count("\n") == 1
