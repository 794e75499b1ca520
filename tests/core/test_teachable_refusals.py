"""Teachable Machine files that cannot be imported: exit 2, one line naming the file, nothing written."""

from __future__ import annotations

import json
import os
import zipfile

import pytest

from core.cli import main
from tests.teachable_runs import KERAS_DIR, TFJS_DIR, require_exports


@pytest.fixture(autouse=True)
def _exports():
    require_exports()


def _tfjs_copy(folder, *, metadata=None, model=None, weights=None):
    """A TF.js export in ``folder``: the real files linked, or the given replacements written."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, replacement in (("metadata.json", metadata), ("model.json", model)):
        if replacement is None:
            os.symlink(TFJS_DIR / name, folder / name)
        else:
            (folder / name).write_text(json.dumps(replacement), encoding="utf-8")
    if weights is None:
        os.symlink(TFJS_DIR / "weights.bin", folder / "weights.bin")
    elif weights is not False:
        (folder / "weights.bin").write_bytes(weights)
    return folder


def _real(name):
    return json.loads((TFJS_DIR / name).read_text(encoding="utf-8"))


def _refused(path, tmp_path, capsys, *named):
    workspace = tmp_path / "workspace"
    assert main(["import", str(path), "--workspace", str(workspace)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    for text in named:
        assert text in lines[0], lines[0]
    assert not workspace.exists(), "a refused import must not write to the workspace"
    return lines[0]


def test_a_pose_project_is_refused(tmp_path, capsys):
    metadata = {**_real("metadata.json"), "packageName": "@teachablemachine/pose"}
    folder = _tfjs_copy(tmp_path / "pose", metadata=metadata)
    line = _refused(folder, tmp_path, capsys, str(folder / "metadata.json"))
    assert "pose project" in line


def test_an_audio_project_is_refused(tmp_path, capsys):
    metadata = {"tfjsSpeechCommandsVersion": "0.4.0", "modelName": "tm-my-audio-model",
                "wordLabels": ["Background Noise", "clap"]}
    folder = _tfjs_copy(tmp_path / "audio", metadata=metadata)
    line = _refused(folder / "model.json", tmp_path, capsys, str(folder / "metadata.json"))
    assert "audio project" in line


def test_an_unknown_architecture_is_refused(tmp_path, capsys):
    model = _real("model.json")
    base = model["modelTopology"]["config"]["layers"][0]["config"]["layers"][0]["config"]
    base["output_layers"] = [["block_13_expand_relu", 0, 0]]
    folder = _tfjs_copy(tmp_path / "cut", model=model)
    line = _refused(folder, tmp_path, capsys, str(folder / "model.json"))
    assert "unknown network" in line


def test_an_embedded_grayscale_model_is_refused(tmp_path, capsys):
    model = _real("model.json")
    base = model["modelTopology"]["config"]["layers"][0]["config"]["layers"][0]["config"]
    base["layers"][0]["config"]["batch_input_shape"] = [None, 96, 96, 1]
    folder = _tfjs_copy(tmp_path / "embedded", model=model)
    line = _refused(folder, tmp_path, capsys, str(folder / "model.json"))
    assert "Embedded" in line


def test_a_truncated_weights_file_is_refused_naming_it_inside_the_zip(tmp_path, capsys):
    archive = tmp_path / "tm-my-image-model.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ("model.json", "metadata.json"):
            zipped.write(TFJS_DIR / name, name)
        zipped.writestr("weights.bin", (TFJS_DIR / "weights.bin").read_bytes()[:100_000])
    line = _refused(archive, tmp_path, capsys, f"weights.bin in '{archive}'")
    assert "truncated" in line and "100,000 bytes" in line


def test_a_missing_weights_file_is_refused(tmp_path, capsys):
    folder = _tfjs_copy(tmp_path / "no-weights", weights=False)
    line = _refused(folder / "model.json", tmp_path, capsys, "weights.bin", str(folder / "model.json"))
    assert "missing" in line


def test_labels_that_do_not_match_the_output_layer_are_refused(tmp_path, capsys):
    folder = tmp_path / "three-labels"
    folder.mkdir()
    os.symlink(KERAS_DIR / "keras_model.h5", folder / "keras_model.h5")
    (folder / "labels.txt").write_text("0 cardboard\n1 plastic\n2 glass\n", encoding="utf-8")
    line = _refused(folder / "keras_model.h5", tmp_path, capsys, str(folder / "labels.txt"))
    assert "3 classes" in line and "has 4" in line


def test_a_file_that_is_no_export_is_refused(tmp_path, capsys):
    picture = tmp_path / "photo.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n")
    _refused(picture, tmp_path, capsys, str(picture))


def test_labels_in_any_script_are_read_in_index_order(tmp_path):
    from core.delivery.teachable import collect_files, read_export

    folder = tmp_path / "labels"
    folder.mkdir()
    os.symlink(KERAS_DIR / "keras_model.h5", folder / "keras_model.h5")
    (folder / "labels.txt").write_bytes("\ufeff1 مثال\r\n0 картон\r\n3 金属  \r\n2 verre\r\n".encode())
    export = read_export(collect_files(folder))
    assert export.classes == ("картон", "مثال", "verre", "金属")
