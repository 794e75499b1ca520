"""Near-duplicates: perceptual hashes survive resizing and re-encoding; groups are tagged; splits keep them together."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance

from core.data.near_duplicates import (
    HASH_ONLY_BITS,
    find_near_duplicate_groups,
    hamming_pairs,
    hash_array,
    near_duplicate_pairs,
    perceptual_hash,
    thumbnails,
)
from core.data.splits import SplitItem, assign_splits


def _photo(seed: int, size: int = 160) -> Image.Image:
    """A random picture of 8 x 8 coloured blocks, unlike any other seed's."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.NEAREST)


def _reencoded(image: Image.Image, quality: int = 35) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _bits(a: Image.Image, b: Image.Image) -> int:
    return int(np.bitwise_count(hash_array([perceptual_hash(a)])[0] ^ hash_array([perceptual_hash(b)])[0]))


def _pairs(images, embeddings=None):
    return near_duplicate_pairs([perceptual_hash(image) for image in images],
                                np.stack([thumbnails(image) for image in images]), embeddings)


def test_resized_reencoded_cropped_and_colour_shifted_copies_are_paired():
    for seed in range(10):
        original = _photo(seed)
        for copy in (original.resize((97, 97)), _reencoded(original), original.crop((6, 4, 153, 155)),
                     ImageEnhance.Color(ImageEnhance.Brightness(original).enhance(1.15)).enhance(0.7)):
            assert _pairs([original, copy]) == [(0, 1)]


def test_resized_and_reencoded_copies_stay_within_the_ingestion_hash_threshold():
    for seed in range(10):
        original = _photo(seed)
        for copy in (original.resize((97, 97)), _reencoded(original, quality=60)):
            assert _bits(original, copy) <= HASH_ONLY_BITS


def test_different_pictures_are_not_paired():
    pictures = [_photo(seed) for seed in range(30)]
    assert _pairs(pictures) == []
    first, _, _ = hamming_pairs(hash_array([perceptual_hash(p) for p in pictures]), HASH_ONLY_BITS)
    assert len(first) == 0


def test_embeddings_that_disagree_veto_a_pair():
    original = _photo(3)
    images = [original, original.resize((90, 90))]
    assert _pairs(images, np.array([[1.0, 0.0, 0.2], [0.98, 0.02, 0.21]])) == [(0, 1)]
    assert _pairs(images, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])) == []


def test_groups_are_tagged_within_class_conflicting_and_across_splits():
    pictures = [_photo(seed) for seed in range(4)]
    images = [pictures[0], pictures[0].resize((80, 80)),      # same class, same split
              pictures[1], _reencoded(pictures[1]),           # another class: conflict
              pictures[2], pictures[2].resize((120, 120)),    # across splits: leakage
              pictures[3]]
    labels = ["a", "a", "a", "b", "a", "a", "b"]
    splits = ["train", "train", "train", "train", "train", "val", "val"]
    groups = find_near_duplicate_groups([perceptual_hash(image) for image in images], labels, splits,
                                        np.stack([thumbnails(image) for image in images]))
    assert [(group.rows, group.kinds) for group in groups] == [
        ((0, 1), ("within_class",)), ((2, 3), ("conflicting_labels",)), ((4, 5), ("across_splits",))]


def test_items_of_one_group_always_land_in_the_same_split():
    items = [SplitItem("a", f"sha{i}", None, group=f"g{i // 3}") for i in range(60)]
    for seed in range(5):
        splits = assign_splits(items, val_fraction=0.3, seed=seed)
        for start in range(0, 60, 3):
            assert len(set(splits[start:start + 3])) == 1
        assert 0 < splits.count("val") < 60


def test_without_groups_the_split_is_the_same_as_by_content_hash():
    plain = [SplitItem("a" if i % 2 else "b", f"sha{i}", None) for i in range(40)]
    grouped = [SplitItem(item.label, item.sha256, None, group=item.sha256) for item in plain]
    assert assign_splits(plain, 0.2, 1) == assign_splits(grouped, 0.2, 1)
