"""Hostile uploads, all generated here. Each gives its documented message.

Whole-upload problems (zip bomb, paths escaping the archive, links, encryption, truncation, too many
entries, too deep folders) are hard errors that leave the workspace exactly as it was. Problems with
single files (pixel bombs, HTML named .jpg, empty files, nested zips) reject or skip that file with a
reason and the rest of the upload is ingested; when nothing usable is left that becomes a hard error.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import time
import zipfile
import zlib

import pytest

from core.data.datasets import ingest
from core.data.ingest_limits import IngestLimits
from core.errors import DatasetError
from tests.core.test_ingest_support import class_files, image_bytes, listing, make_zip


def _refused(workspace, zip_path, message, limits=None):
    before = listing(workspace.root)
    with pytest.raises(DatasetError, match=message):
        ingest(zip_path, workspace, limits=limits)
    assert listing(workspace.root) == before


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` but holds only a few bytes of pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_zip_bomb_with_a_high_compression_ratio_is_refused(tmp_path, workspace):
    files = {**class_files(), "cats/huge.png": b"\0" * (8 * 1024**2)}
    _refused(workspace, make_zip(tmp_path / "bomb.zip", files), r"'cats/huge.png' expands .* zip bomb")


def test_many_small_highly_compressed_entries_are_refused_as_a_bomb(tmp_path, workspace):
    files = {**class_files(), **{f"cats/zeros_{i}.png": b"\0" * (1024**2) for i in range(20)}}
    _refused(workspace, make_zip(tmp_path / "bombs.zip", files), r"The zip.s 30 entries expand .* zip bomb")


def test_total_uncompressed_size_over_the_limit_is_refused(tmp_path, workspace):
    limits = IngestLimits(max_total_bytes=20_000)
    _refused(workspace, make_zip(tmp_path / "big.zip", class_files(per_class=10)), "TOTAL_BYTES", limits)


@pytest.mark.parametrize("name", ["../escape.png", "cats/../../escape.png", "/etc/escape.png", "C:/x.png"])
def test_paths_leaving_the_archive_are_refused(tmp_path, workspace, name):
    files = {**class_files(), name: image_bytes(1)}
    _refused(workspace, make_zip(tmp_path / "slip.zip", files), "points outside the archive")


def test_symlink_entries_are_refused(tmp_path, workspace):
    zip_path = make_zip(tmp_path / "link.zip", class_files())
    with zipfile.ZipFile(zip_path, "a") as archive:
        info = zipfile.ZipInfo("cats/passwd.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    _refused(workspace, zip_path, r"'cats/passwd.png' is a symbolic link")


def test_encrypted_zip_is_refused(tmp_path, workspace):
    # Python cannot write encrypted zips; setting the "encrypted" flag bit in the headers is what a
    # zip tool run with a password produces as far as the directory is concerned.
    data = bytearray(make_zip(tmp_path / "plain.zip", class_files()).read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)
        while start >= 0:
            data[start + offset] |= 0x1
            start = data.find(signature, start + 4)
    (tmp_path / "secret.zip").write_bytes(bytes(data))
    _refused(workspace, tmp_path / "secret.zip", "is encrypted")


def test_truncated_zip_is_refused(tmp_path, workspace):
    data = make_zip(tmp_path / "whole.zip", class_files()).read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    _refused(workspace, tmp_path / "cut.zip", "is not a readable zip file.*truncated")


def test_not_a_zip_at_all_is_refused(tmp_path, workspace):
    (tmp_path / "photo.zip").write_bytes(image_bytes(3))
    _refused(workspace, tmp_path / "photo.zip", "is not a readable zip file")


def test_zip_inside_the_zip_is_skipped_and_reported(tmp_path, workspace):
    inner = make_zip(tmp_path / "inner.zip", class_files(seed=9)).read_bytes()
    dataset = ingest(make_zip(tmp_path / "outer.zip", {**class_files(), "more/inner.zip": inner}), workspace)
    assert len(dataset.entries) == 10
    assert any(s["file"] == "more/inner.zip" and "not extracted" in s["reason"] for s in dataset.summary["skipped"])
    assert any(w["code"] == "nested_archive" for w in dataset.summary["warnings"])


def test_only_a_zip_inside_the_zip_is_an_error_saying_to_extract_it(tmp_path, workspace):
    inner = make_zip(tmp_path / "inner.zip", class_files()).read_bytes()
    _refused(workspace, make_zip(tmp_path / "outer.zip", {"inner.zip": inner}), "Extract it and upload")


def test_non_utf8_file_names_are_read_and_stored_as_text(tmp_path, workspace):
    data = make_zip(tmp_path / "names.zip", class_files(classes=("caf_", "dogs"))).read_bytes()
    patched = data.replace(b"caf_/", b"caf\xe9/")  # a Latin-1 name without the zip UTF-8 flag
    (tmp_path / "latin.zip").write_bytes(patched)
    dataset = ingest(tmp_path / "latin.zip", workspace)
    assert dataset.classes == ("caf\u0398", "dogs")  # zip readers decode such names as cp437
    assert all(e.source.encode("utf-8") for e in dataset.entries)


def test_non_utf8_folder_names_on_disk_become_replacement_characters(tmp_path, workspace):
    root = os.fsencode(tmp_path / "folder")
    for name, data in class_files(classes=("caf_", "dogs")).items():
        path = os.path.join(root, name.replace("caf_", "caf\udce9").encode("utf-8", "surrogateescape"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    dataset = ingest(tmp_path / "folder", workspace)
    assert dataset.classes == ("caf\ufffd", "dogs")


def test_tens_of_thousands_of_tiny_files_over_the_entry_limit_are_refused_quickly(tmp_path, workspace):
    zip_path = tmp_path / "many.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for i in range(100_001):
            archive.writestr(f"c{i % 2}/{i}.png", b"x")
    started = time.monotonic()
    _refused(workspace, zip_path, r"100,001 entries; the limit is 100,000 \(TRANSFER_STUDIO_MAX_ENTRIES\)")
    assert time.monotonic() - started < 20


def test_entry_limit_is_configurable_with_an_environment_variable(tmp_path, workspace, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_MAX_ENTRIES", "20000")
    zip_path = tmp_path / "many.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for i in range(30_000):
            archive.writestr(f"c{i % 2}/{i}.png", b"")
    _refused(workspace, zip_path, "30,000 entries; the limit is 20,000")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns; we reject
@pytest.mark.parametrize(("width", "height"), [(12_000, 9_000), (40_000, 40_000)])
def test_image_header_declaring_over_100_million_pixels_is_rejected_without_decoding(
        tmp_path, workspace, width, height):
    files = {**class_files(), "cats/bomb.png": _png_header_only(width, height)}
    dataset = ingest(make_zip(tmp_path / "pixels.zip", files), workspace)
    reason = next(r["reason"] for r in dataset.summary["rejected"] if r["file"] == "cats/bomb.png")
    assert "too many pixels" in reason
    assert list(workspace.tmp_dir.iterdir()) == []


def test_html_named_jpg_and_zero_byte_files_are_rejected_with_reasons(tmp_path, workspace):
    files = {**class_files(), "cats/page.jpg": b"<!DOCTYPE html>\n<html><body>Not found</body></html>",
             "dogs/empty.jpg": b""}
    rejected = {r["file"]: r["reason"] for r in ingest(make_zip(tmp_path / "h.zip", files),
                                                        workspace).summary["rejected"]}
    assert "HTML" in rejected["cats/page.jpg"]
    assert rejected["dogs/empty.jpg"] == "empty file (0 bytes)"


def test_very_deep_folders_are_refused(tmp_path, workspace):
    deep = "/".join(f"d{i}" for i in range(20))
    files = {**class_files(), f"cats/{deep}/x.png": image_bytes(5)}
    _refused(workspace, make_zip(tmp_path / "deep.zip", files), r"21 folder levels deep; the limit is 16")


def test_a_file_object_upload_that_fails_leaves_no_spooled_copy(workspace):
    upload = io.BytesIO(b"PK\x03\x04 definitely not a complete zip")
    upload.name = "upload.zip"
    before = listing(workspace.root)
    with pytest.raises(DatasetError, match="not a readable zip"):
        ingest(upload, workspace)
    assert listing(workspace.root) == before
