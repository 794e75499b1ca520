"""Spaces in core: the fair queue over spaces, per-space limits, the shared embedding cache."""

from __future__ import annotations

import os

import pytest

from core import runs
from core.config import TrainConfig
from core.errors import LimitError, SpaceError
from core.jobs import JobManager, fair_order
from core.spaces import (
    check_dataset_room,
    create_space,
    delete_space,
    list_spaces,
    open_space,
    space_workspaces,
)
from tests.factories import make_class_folders, make_tiny_dataset


def _queued(workspace, dataset, queued_at: float, seed: int) -> str:
    run_id = runs.create_run(workspace, TrainConfig(dataset_id=dataset.id, weights="none", seed=seed),
                             classes=dataset.classes, status="queued")
    runs.update_run(workspace, run_id, queued_at=queued_at, space=workspace.space)
    return run_id


def test_fair_order_without_spaces_is_first_come_first_served():
    records = [{"run_id": name, "status": "queued", "queued_at": at, "created_at": at, "space": None}
               for name, at in (("c", 3.0), ("a", 1.0), ("b", 2.0))]
    assert [r["run_id"] for r in fair_order(records)] == ["a", "b", "c"]


def test_fair_order_takes_spaces_in_turn():
    def run(name, space, at, status="queued", started=None):
        return {"run_id": name, "space": space, "status": status, "queued_at": at, "created_at": at,
                "started_at": started}

    five_of_a = [run(f"a{i}", "A", float(i)) for i in range(1, 6)]
    records = five_of_a + [run("b1", "B", 10.0), run("c1", "C", 11.0)]
    assert [r["run_id"] for r in fair_order(records)] == ["a1", "b1", "c1", "a2", "a3", "a4", "a5"]
    training = [run("a0", "A", 0.0, status="running", started=20.0)]
    assert [r["run_id"] for r in fair_order(records + training)][:3] == ["b1", "c1", "a1"]
    finished_b = [run("b0", "B", 0.0, status="done", started=30.0)]
    assert [r["run_id"] for r in fair_order(records + training + finished_b)][:3] == ["c1", "a1", "b1"]


def test_the_manager_queues_the_runs_of_every_space_in_turn(workspace, tmp_path):
    a, b = create_space(workspace), create_space(workspace)
    dataset_a, dataset_b = make_tiny_dataset(a, tmp_path / "a"), make_tiny_dataset(b, tmp_path / "b")
    a_runs = [_queued(a, dataset_a, queued_at=float(i), seed=i) for i in range(5)]
    b_first = _queued(b, dataset_b, queued_at=100.0, seed=9)
    manager = JobManager(workspace, max_jobs=1, spaces=True)  # not started: nothing is launched
    order = [(r["space"], r["run_id"]) for r in manager.queue()]
    assert order[:2] == [(a.space, a_runs[0]), (b.space, b_first)]
    assert manager.queue_position(b_first, b) == 2
    assert manager.queue_position(b_first, a) is None
    assert [r["run_id"] for r in manager.status(b)[1]] == [b_first]


def test_a_space_at_its_run_limit_refuses_a_new_run_and_keeps_the_queued_ones(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_SPACE_MAX_QUEUED", "2")
    space = create_space(workspace)
    dataset = make_tiny_dataset(space, tmp_path)
    waiting = [_queued(space, dataset, queued_at=float(i), seed=i) for i in range(2)]
    manager = JobManager(workspace, max_jobs=1, spaces=True)
    with pytest.raises(LimitError) as caught:
        manager.submit(TrainConfig(dataset_id=dataset.id, weights="none"), space)
    message = str(caught.value)
    assert "Run limit reached" in message and "2 runs queued or training" in message
    assert "TRANSFER_STUDIO_SPACE_MAX_QUEUED" in message and "stop one" in message
    assert sorted(r["run_id"] for r in runs.list_runs(space)) == sorted(waiting)
    assert all(r["status"] == "queued" for r in runs.list_runs(space))


def test_a_space_over_its_disk_limit_names_what_to_delete(workspace, tmp_path, monkeypatch):
    space = create_space(workspace)
    dataset = make_tiny_dataset(space, tmp_path)
    monkeypatch.setenv("TRANSFER_STUDIO_SPACE_MAX_DISK_MB", "0.01")
    with pytest.raises(LimitError) as caught:
        check_dataset_room(space)
    assert "Disk limit reached" in str(caught.value) and f"dataset {dataset.id}" in str(caught.value)
    folder = make_class_folders(tmp_path / "another", classes=("red", "blue"), seed=3)
    with pytest.raises(LimitError):
        from core.data.datasets import ingest

        ingest(folder, space)
    assert [child.name for child in space.datasets_dir.iterdir()] == [dataset.id]


def test_limits_do_not_apply_outside_spaces(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_SPACE_MAX_DATASETS", "0")
    make_tiny_dataset(workspace, tmp_path)
    check_dataset_room(workspace)


def test_spaces_share_only_the_embedding_cache(workspace):
    a, b = create_space(workspace), create_space(workspace)
    assert a.features_dir == b.features_dir == workspace.features_dir
    assert a.datasets_dir != b.datasets_dir and a.runs_dir != b.runs_dir and a.tmp_dir != b.tmp_dir
    assert a.root.parent == b.root.parent == workspace.root / "spaces"
    assert [ws.space for ws in space_workspaces(workspace)] == [a.space, b.space]


def test_open_space_refuses_unknown_and_malformed_keys(workspace):
    for key in ("../../etc", "short", "A" * 30, ""):
        with pytest.raises(SpaceError, match="no space"):
            open_space(workspace, key)
    assert not (workspace.root / "spaces").exists() or not os.listdir(workspace.root / "spaces")


def test_deleting_a_space_removes_it_and_nothing_else(workspace, tmp_path):
    a, b = create_space(workspace), create_space(workspace)
    make_tiny_dataset(a, tmp_path / "a")
    kept = make_tiny_dataset(b, tmp_path / "b")
    assert [info.key for info in list_spaces(workspace)] == [a.space, b.space]
    assert list_spaces(workspace)[0].bytes_used > 0
    delete_space(workspace, a.space)
    assert not a.root.exists()
    assert [info.key for info in list_spaces(workspace)] == [b.space]
    assert [d.name for d in b.datasets_dir.iterdir()] == [kept.id]
