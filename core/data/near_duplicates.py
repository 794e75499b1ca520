"""Near-duplicate images: the same picture after resizing, re-encoding, a small crop or a colour shift.

Three signals, their thresholds measured on planted copies (``bench/bench_health.py``):

- a 64-bit perceptual hash (pHash: the signs of the lowest 8 x 8 DCT frequencies of a 32 x 32 gray thumbnail
  against their median), computed at ingestion and kept in the manifest. Resizing, re-encoding and colour shifts
  move it by a few bits, a small crop by up to about 20. It finds the candidates; at ingestion, where it is all
  there is, hashes within ``HASH_ONLY_BITS`` keep their images in one split.
- the cosine similarity of the backbone embeddings, which drops candidates that do not even look alike.
- the correlation of small gray thumbnails, the best over a few centre crops of either side so that a cropped copy
  still lines up: it is what tells a copy (0.99 and up when not cropped) from another photo of the same scene
  (hands on one background: up to 0.97).

Pairs are joined into groups (union-find); a group is reported within a class, across classes (conflicting labels)
or across splits (leakage).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from PIL import Image

THUMB = 24           # side of the gray thumbnails whose correlation decides a candidate pair
# crops (left, top, right, bottom margins) tried on each side of a pair, so a slightly cropped copy still lines up
BOXES = ((0.0, 0.0, 0.0, 0.0),) + tuple((left, top, margin - left, margin - top) for margin in (0.06, 0.1)
                                        for left in (0.0, margin / 2, margin) for top in (0.0, margin / 2, margin))
MIN_CORRELATION = 0.95  # zero-mean correlation of the best-aligned thumbnails
HASH_SIZE = 8        # 8 x 8 = 64 bits
HASH_THUMB = 32      # side of the gray thumbnail the DCT runs on
HASH_ONLY_BITS = 4   # without thumbnails (at ingestion), hashes this close count as the same picture
HASH_WITH_EMBEDDING_BITS = 22  # candidates: a small crop moves the hash up to about this many bits
MIN_COSINE = 0.7     # candidates' embeddings at least this similar (copies measured 0.74 to 1.0)
CHUNK = 1024


def _dct_matrix(size: int) -> np.ndarray:
    n = np.arange(size)
    matrix = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * size))
    matrix[0] /= np.sqrt(2.0)
    return matrix * np.sqrt(2.0 / size)


_DCT = _dct_matrix(HASH_THUMB)


def perceptual_hash(image: Image.Image) -> str:
    """The 64-bit pHash of ``image`` as 16 hex digits (same picture, resized or re-encoded: a few bits apart)."""
    gray = image.convert("L").resize((HASH_THUMB, HASH_THUMB), Image.Resampling.LANCZOS)
    pixels = np.asarray(gray, dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T)[:HASH_SIZE, :HASH_SIZE].ravel()
    bits = low > np.median(low[1:])  # the DC term only says how bright the picture is
    return f"{int(''.join('1' if bit else '0' for bit in bits), 2):016x}"


def hash_array(hashes) -> np.ndarray:
    """uint64 array of hex hashes; an empty or malformed hash becomes 0 (and is never paired, see below)."""
    values = []
    for text in hashes:
        try:
            values.append(int(text, 16))
        except (TypeError, ValueError):
            values.append(0)
    return np.array(values, dtype=np.uint64)


def hamming_pairs(hashes: np.ndarray, max_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, second, bits)`` arrays: every pair ``first < second`` whose hashes differ in at most ``max_bits``."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    valid = hashes != 0
    found = [], [], []
    for start in range(0, len(hashes), CHUNK):
        block = hashes[start:start + CHUNK]
        distance = np.bitwise_count(block[:, None] ^ hashes[None, :])
        rows, cols = np.nonzero(distance <= max_bits)
        keep = (cols > rows + start) & valid[rows + start] & valid[cols]
        for column, values in zip(found, (rows[keep] + start, cols[keep], distance[rows[keep], cols[keep]]),
                                  strict=True):
            column.append(values.astype(np.int64))
    return tuple(np.concatenate(column) if column else np.zeros(0, np.int64) for column in found)


def thumbnails(image: Image.Image) -> np.ndarray:
    """(len(BOXES), THUMB * THUMB) zero-mean, unit-length gray thumbnails of ``image`` and of crops of it."""
    gray = image.convert("L")
    width, height = gray.size
    rows = []
    for left, top, right, bottom in BOXES:
        box = (left * width, top * height, width * (1 - right), height * (1 - bottom))
        pixels = np.asarray(gray.resize((THUMB, THUMB), Image.Resampling.BILINEAR, box=box), np.float64).ravel()
        pixels = pixels - pixels.mean()
        rows.append(pixels / max(float(np.linalg.norm(pixels)), 1e-9))
    return np.stack(rows).astype(np.float32)


def _best_correlation(thumbs: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per pair, the highest correlation of one side's full thumbnail with the other's (cropped or not)."""
    best = np.full(len(first), -1.0)
    for chunk in range(0, len(first), 5000):
        a, b = thumbs[first[chunk:chunk + 5000]], thumbs[second[chunk:chunk + 5000]]
        one_way = np.einsum("pd,pkd->pk", a[:, 0], b).max(axis=1)
        other_way = np.einsum("pkd,pd->pk", a[:, 1:], b[:, 0]).max(axis=1)
        best[chunk:chunk + 5000] = np.maximum(one_way, other_way)
    return best


def near_duplicate_pairs(hashes, thumbs: np.ndarray | None = None, embeddings: np.ndarray | None = None, *,
                         max_bits: int = HASH_WITH_EMBEDDING_BITS, hash_only_bits: int = HASH_ONLY_BITS,
                         min_cosine: float = MIN_COSINE,
                         min_correlation: float = MIN_CORRELATION) -> list[tuple[int, int]]:
    """Pairs of rows that show the same picture.

    Candidates are the pairs whose hashes differ in at most ``max_bits`` bits (and, given embeddings, whose
    embeddings are at least ``min_cosine`` similar); with thumbnails (:func:`thumbnails`) a candidate is kept when
    its best-aligned thumbnails correlate at least ``min_correlation``, without them when its hashes differ in at
    most ``hash_only_bits`` bits.

    Returns:
        Sorted ``(i, j)`` pairs with ``i < j``.
    """
    first, second, _ = hamming_pairs(hash_array(hashes), max_bits if thumbs is not None else hash_only_bits)
    keep = np.ones(len(first), dtype=bool)
    if embeddings is not None and len(embeddings):
        data = np.asarray(embeddings, dtype=np.float32)
        unit = data / np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-12)
        for chunk in range(0, len(first), 20000):
            rows = slice(chunk, chunk + 20000)
            keep[rows] = np.einsum("pd,pd->p", unit[first[rows]], unit[second[rows]]) >= min_cosine
    if thumbs is not None:
        keep[keep] = _best_correlation(np.asarray(thumbs), first[keep], second[keep]) >= min_correlation
    return sorted(zip(first[keep].tolist(), second[keep].tolist(), strict=True))


def group_ids(count: int, pairs) -> list[int]:
    """Union-find over ``pairs``: a group id per row (the smallest row index in its group)."""
    parent = list(range(count))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(count)]


@dataclass(frozen=True)
class DuplicateGroup:
    """Rows that show the same picture, and why that matters."""

    rows: tuple[int, ...]
    kinds: tuple[str, ...]  # any of "within_class", "conflicting_labels", "across_splits"


def find_near_duplicate_groups(hashes, labels, splits, thumbs: np.ndarray | None = None,
                               embeddings: np.ndarray | None = None, **thresholds) -> list[DuplicateGroup]:
    """Groups of two or more rows showing the same picture, each tagged with its kinds.

    Args:
        hashes: Hex perceptual hashes.
        labels: Label per row.
        splits: Split per row.
        thumbs: Optional (N, scales, pixels) thumbnails (see :func:`thumbnails`).
        embeddings: Optional embeddings (see :func:`near_duplicate_pairs`).
        **thresholds: Passed to :func:`near_duplicate_pairs`.

    Returns:
        Groups in order of their first row.
    """
    ids = group_ids(len(labels), near_duplicate_pairs(hashes, thumbs, embeddings, **thresholds))
    members: dict[int, list[int]] = defaultdict(list)
    for row, group in enumerate(ids):
        members[group].append(row)
    groups = []
    for rows in sorted(members.values()):
        if len(rows) < 2:
            continue
        kinds = []
        if len({(labels[r], splits[r]) for r in rows}) < len(rows):
            kinds.append("within_class")
        if len({labels[r] for r in rows}) > 1:
            kinds.append("conflicting_labels")
        if len({splits[r] for r in rows}) > 1:
            kinds.append("across_splits")
        groups.append(DuplicateGroup(tuple(rows), tuple(kinds)))
    return groups
