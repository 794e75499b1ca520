"""The health check on generated images with planted problems, through real MobileNetV2 ImageNet features.

Planted: two training images filed under another class (flipped labels), a resized and a re-encoded copy of
training images in the validation split (leakage), and a re-encoded copy of a red picture filed as blue (conflict).
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from core import runs
from core.cli import main
from core.data.datasets import ingest, load_dataset
from core.health_jobs import HealthConfig, execute_health_job, family_report, latest_health_job, load_report
from core.insight.health import CHECK_FIELDS, check_dataset
from core.workspace import Workspace

COLOURS = {"red": (210, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 210)}
FLIPPED = {"train/green/flip_red.png": "red", "train/red/flip_blue.png": "blue"}
CONFLICT = {"train/red/red_007.png", "train/blue/conflict.jpg"}
LEAKS = [{"train/green/green_005.png", "val/green/copy_resized.png"},
         {"train/blue/blue_006.png", "val/blue/copy_jpeg.jpg"}]


def picture(colour: str, seed: int, size: int = 64) -> Image.Image:
    """A square of ``colour`` at a random place on random gray blocks (no two pictures alike)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(70, 180, size=(4, 4), dtype=np.uint8)
    gray = np.asarray(Image.fromarray(blocks).resize((size, size), Image.Resampling.NEAREST), dtype=np.float64)
    pixels = np.repeat(gray[..., None], 3, axis=2)
    x, y = rng.integers(0, size // 2, size=2)
    pixels[y:y + size // 2, x:x + size // 2] = COLOURS[colour]
    pixels += rng.normal(0, 3, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, quality: int = 60) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def write_planted(root) -> None:
    seed = 0
    for split, count in (("train", 12), ("val", 4)):
        for colour in COLOURS:
            (root / split / colour).mkdir(parents=True)
            for index in range(count):
                seed += 1
                picture(colour, seed).save(root / split / colour / f"{colour}_{index:03d}.png")
    (root / "train/red/red_003.png").rename(root / "train/green/flip_red.png")
    (root / "train/blue/blue_004.png").rename(root / "train/red/flip_blue.png")
    Image.open(root / "train/green/green_005.png").resize((90, 90)).save(root / "val/green/copy_resized.png")
    (root / "val/blue/copy_jpeg.jpg").write_bytes(_jpeg(Image.open(root / "train/blue/blue_006.png")))
    (root / "train/blue/conflict.jpg").write_bytes(_jpeg(Image.open(root / "train/red/red_007.png"), 85))


@pytest.fixture(scope="module")
def planted(tmp_path_factory, keras_home):
    root = tmp_path_factory.mktemp("planted")
    write_planted(root / "upload")
    workspace = Workspace.open(root / "workspace")
    dataset = ingest(root / "upload", workspace)
    return workspace, dataset, check_dataset(workspace, dataset.id, "mobilenet_v2")


def test_planted_flipped_labels_rank_above_every_clean_image(planted):
    _, _, report = planted
    ranked = [issue["source"] for issue in report["label_issues"]]
    planted_issues = set(FLIPPED) | {"train/blue/conflict.jpg"}
    assert planted_issues <= set(ranked[:3]), ranked
    suggested = {issue["source"]: issue["suggested"] for issue in report["label_issues"]}
    assert {source: suggested[source] for source in FLIPPED} == FLIPPED
    scores = [issue["score"] for issue in report["label_issues"]]
    assert scores == sorted(scores, reverse=True)


def test_resized_and_reencoded_copies_across_splits_are_reported_as_leakage(planted):
    _, _, report = planted
    leaks = [{item["source"] for item in group} for group in report["leakage"]]
    for pair in LEAKS:
        assert pair in leaks
    assert all({item["split"] for item in group} == {"train", "val"} for group in report["leakage"])


def test_a_copy_in_another_class_is_reported_as_a_conflict(planted):
    _, _, report = planted
    assert CONFLICT in [{item["source"] for item in group} for group in report["conflicts"]]
    assert report["counts"]["near_duplicate_groups"] == 3  # the two leaks and the conflict, nothing else


def test_check_json_has_exactly_the_documented_fields(planted, capsys):
    workspace, dataset, _ = planted
    assert main(["check", dataset.id, "--json", "--workspace", str(workspace.root)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert tuple(printed) == CHECK_FIELDS
    assert all(set(issue) == {"file", "source", "label", "suggested", "score"} for issue in printed["label_issues"])
    assert all(set(item) == {"source", "split"} for group in printed["near_duplicates"] for item in group)
    assert all(set(item) == {"source", "score"} for item in printed["outliers"])


def test_check_exits_2_with_one_error_line_on_a_bad_id_or_missing_weights(planted, capsys):
    workspace, dataset, _ = planted
    assert main(["check", "no-such-dataset", "--workspace", str(workspace.root)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error:") and "no-such-dataset" in error[0]
    assert main(["check", dataset.id, "--backbone", "resnet50", "--json", "--workspace", str(workspace.root)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: No ImageNet weights for ResNet50")


def test_a_health_job_writes_its_report_and_stays_out_of_the_training_lists(planted):
    workspace, dataset, report = planted
    job_id = runs.create_run(workspace, HealthConfig(dataset.id), classes=dataset.classes, status="queued")
    record = execute_health_job(workspace, job_id)
    assert record["status"] == "done" and record["kind"] == "health"
    assert load_report(workspace, job_id)["label_issues"] == report["label_issues"]
    assert runs.load_progress(workspace, job_id)["stage"] == "finished"
    assert job_id not in [r["run_id"] for r in runs.list_runs(workspace)]
    assert latest_health_job(workspace, dataset.id)["run_id"] == job_id
    found, made_for = family_report(workspace, dataset)
    assert made_for == dataset.id and found["counts"] == report["counts"]


def test_the_job_manager_runs_a_health_job_in_a_worker_process(planted):
    from core.jobs import JobManager

    workspace, dataset, _ = planted
    manager = JobManager(workspace)
    manager.start()
    try:
        job_id = manager.submit(HealthConfig(dataset.id))
        deadline = time.time() + 240
        while time.time() < deadline and runs.load_run(workspace, job_id)["status"] in ("queued", "running"):
            time.sleep(1)
    finally:
        manager.shutdown()
    record = runs.load_run(workspace, job_id)
    assert record["status"] == "done", record.get("error")
    assert load_report(workspace, job_id)["counts"]["images"] == len(load_dataset(workspace, dataset.id).entries)
