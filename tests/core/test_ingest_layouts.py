"""Every accepted zip layout, junk handling and the three kinds of source."""

from __future__ import annotations

import io

import pytest

from core.data.datasets import ingest
from core.errors import DatasetError
from tests.core.test_ingest_support import class_files, image_bytes, make_zip


def _counts(dataset):
    return {split: dict(counts) for split, counts in dataset.summary["counts"].items()}


def test_class_folders_at_top_give_classes_and_generated_split(tmp_path, workspace):
    zip_path = make_zip(tmp_path / "pets.zip", class_files(per_class=10))
    dataset = ingest(zip_path, workspace)
    assert dataset.classes == ("cats", "dogs")
    assert _counts(dataset) == {"train": {"cats": 8, "dogs": 8}, "val": {"cats": 2, "dogs": 2}}
    assert dataset.summary["layout"] == "class_folders" and dataset.summary["generated_split"]


def test_class_folders_wrapped_in_a_root_folder_are_unwrapped(tmp_path, workspace):
    zip_path = make_zip(tmp_path / "pets.zip", class_files(prefix="my_pets/photos/"))
    dataset = ingest(zip_path, workspace)
    assert dataset.classes == ("cats", "dogs")


def test_a_stray_image_beside_the_root_folder_does_not_stop_unwrapping(tmp_path, workspace):
    files = {**class_files(prefix="my_pets/"), "cover.png": image_bytes(77)}
    dataset = ingest(make_zip(tmp_path / "pets.zip", files), workspace)
    assert dataset.classes == ("cats", "dogs")
    assert dataset.summary["rejected"] == [{"file": "cover.png", "reason": "not inside a class folder"}]
    files = {**class_files(prefix="data/train/"), **class_files(prefix="data/val/", seed=9),
             "data/cover.png": image_bytes(78)}
    dataset = ingest(make_zip(tmp_path / "split.zip", files), workspace)
    assert dataset.splits == ("train", "val")
    assert dataset.summary["rejected"] == [{"file": "data/cover.png",
                                            "reason": "not inside a class folder inside the split folder"}]


@pytest.mark.parametrize("val_name", ["val", "validation", "valid", "Val"])
def test_split_folders_keep_the_given_split(tmp_path, workspace, val_name):
    files = {**class_files(per_class=4, prefix="data/train/"),
             **class_files(per_class=2, prefix=f"data/{val_name}/", seed=50)}
    dataset = ingest(make_zip(tmp_path / "split.zip", files), workspace)
    assert dataset.summary["layout"] == "split_folders"
    assert _counts(dataset) == {"train": {"cats": 4, "dogs": 4}, "val": {"cats": 2, "dogs": 2}}
    assert not dataset.summary["generated_split"]


def test_train_and_test_folders_get_a_generated_val_split_from_train(tmp_path, workspace):
    files = {**class_files(per_class=10, prefix="train/"), **class_files(per_class=3, prefix="test/", seed=70)}
    dataset = ingest(make_zip(tmp_path / "tt.zip", files), workspace)
    assert dataset.splits == ("train", "val", "test")
    assert _counts(dataset)["test"] == {"cats": 3, "dogs": 3}
    assert _counts(dataset)["val"] == {"cats": 2, "dogs": 2}


def test_split_folders_mixed_with_class_folders_is_an_error(tmp_path, workspace):
    files = {**class_files(prefix="train/"), **class_files(classes=("birds",), prefix="")}
    with pytest.raises(DatasetError, match="mixes split folders"):
        ingest(make_zip(tmp_path / "mixed.zip", files), workspace)


def test_labels_csv_assigns_labels_and_optional_splits(tmp_path, workspace):
    files = {f"pics/{i}.png": image_bytes(i) for i in range(8)}
    rows = ["filename,label,split"] + [f"{i}.png,{'a' if i % 2 else 'b'},{'val' if i < 2 else 'train'}"
                                       for i in range(7)] + ["missing.png,a,train"]
    files["pics/labels.csv"] = "\n".join(rows).encode()
    dataset = ingest(make_zip(tmp_path / "csv.zip", files), workspace)
    assert dataset.summary["layout"] == "labels_csv"
    assert _counts(dataset) == {"train": {"a": 2, "b": 3}, "val": {"a": 1, "b": 1}}
    assert {"file": "missing.png", "reason": "listed in pics/labels.csv but not found in the upload"} \
        in dataset.summary["rejected"]
    assert any(s["file"] == "pics/7.png" and "not listed" in s["reason"] for s in dataset.summary["skipped"])


def test_labels_csv_without_label_column_is_an_error(tmp_path, workspace):
    files = {"a.png": image_bytes(1), "labels.csv": b"name,class\na.png,x\n"}
    with pytest.raises(DatasetError, match="expected a header 'filename,label'"):
        ingest(make_zip(tmp_path / "bad.zip", files), workspace)


def test_junk_files_are_skipped_and_reported(tmp_path, workspace):
    files = class_files(prefix="root/")
    files.update({
        "__MACOSX/root/cats/._img_0.png": b"\0\5\26\7",
        "root/cats/._img_1.png": b"mac",
        "root/.DS_Store": b"x",
        "root/dogs/Thumbs.db": b"x",
        "root/dogs/desktop.ini": b"x",
        "root/README.txt": b"hello",
        "root/cats/notes.pdf": b"%PDF",
    })
    dataset = ingest(make_zip(tmp_path / "junk.zip", files), workspace)
    assert dataset.summary["class_totals"] == {"cats": 5, "dogs": 5}
    skipped = {item["file"] for item in dataset.summary["skipped"]}
    assert skipped == {"__MACOSX/root/cats/._img_0.png", "root/cats/._img_1.png", "root/.DS_Store",
                       "root/dogs/Thumbs.db", "root/dogs/desktop.ini", "root/README.txt", "root/cats/notes.pdf"}
    assert dataset.summary["rejected"] == []


def test_images_outside_class_folders_are_rejected_with_a_reason(tmp_path, workspace):
    files = {**class_files(), "loose.png": image_bytes(99)}
    dataset = ingest(make_zip(tmp_path / "loose.zip", files), workspace)
    assert dataset.summary["rejected"] == [{"file": "loose.png", "reason": "not inside a class folder"}]


def test_a_folder_is_ingested_like_a_zip(tmp_path, workspace):
    for name, data in class_files().items():
        path = tmp_path / "folder" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    dataset = ingest(tmp_path / "folder", workspace)
    assert dataset.classes == ("cats", "dogs") and len(dataset.entries) == 10


def test_a_file_object_is_spooled_and_the_copy_removed(tmp_path, workspace):
    data = make_zip(tmp_path / "pets.zip", class_files()).read_bytes()
    upload = io.BytesIO(data)
    upload.name = "uploaded pets.zip"
    dataset = ingest(upload, workspace)
    assert dataset.name == "uploaded pets.zip" and dataset.id.startswith("uploaded-pets-")
    assert list(workspace.tmp_dir.iterdir()) == []


def test_png_named_jpg_and_upper_case_extensions_are_read_by_content(tmp_path, workspace):
    files = {"a/x.jpg": image_bytes(1, fmt="PNG"), "a/y.JPG": image_bytes(2, fmt="JPEG"),
             "b/z.JPEG": image_bytes(3, fmt="JPEG"), "b/w.Png": image_bytes(4)}
    dataset = ingest(make_zip(tmp_path / "ext.zip", files), workspace)
    assert len(dataset.entries) == 4 and dataset.summary["rejected"] == []


def test_symbolic_links_in_a_folder_are_skipped_not_followed(tmp_path, workspace):
    secret = tmp_path / "secret.png"
    secret.write_bytes(image_bytes(42))
    for name, data in class_files().items():
        path = tmp_path / "folder" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp_path / "folder" / "cats" / "link.png").symlink_to(secret)
    (tmp_path / "folder" / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    dataset = ingest(tmp_path / "folder", workspace)
    assert len(dataset.entries) == 10
    skipped = {item["file"]: item["reason"] for item in dataset.summary["skipped"]}
    assert skipped == {"cats/link.png": "symbolic link (not followed)",
                       "elsewhere": "symbolic link (not followed)"}
