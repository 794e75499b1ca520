"""Atomic writes: the mode an ordinary write would give, and the folder synced after the rename."""

from __future__ import annotations

import os
import stat

import pytest

from core.workspace import atomic_write_bytes, atomic_write_json, current_umask


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    os.umask(previous)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_are_0644_under_the_default_umask(tmp_path, umask):
    umask(0o022)
    atomic_write_bytes(tmp_path / "bundle.zip", b"data")
    atomic_write_json(tmp_path / "run.json", {"a": 1})
    assert _mode(tmp_path / "bundle.zip") == 0o644
    assert _mode(tmp_path / "run.json") == 0o644


def test_a_private_umask_is_respected(tmp_path, umask):
    umask(0o077)
    atomic_write_bytes(tmp_path / "secret.bin", b"data")
    assert _mode(tmp_path / "secret.bin") == 0o600
    assert current_umask() == 0o077


def test_replacing_a_file_keeps_the_new_content_and_the_umask_mode(tmp_path, umask):
    umask(0o002)
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o664
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]  # no temporary file left


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert synced == [False, True]  # the file's data, then the folder's entry
