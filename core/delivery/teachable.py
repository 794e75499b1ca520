"""Reading Teachable Machine image exports: the Keras download and the TensorFlow.js download.

A reader turns what the user gives (a zip, a folder, or one of the files with the others beside it) into a
``TeachableExport``: class names in output order, the network's shape (MobileNetV2 width ``alpha``, input size,
the dense head) read from the files rather than assumed, every weight by layer name, and each file's hash.
Nothing is written anywhere; ``core.delivery.teachable_model`` rebuilds the network with Keras 3 layers and makes a run.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from core.errors import ModelImportError

KERAS_FILES = ("keras_model.h5", "labels.txt")
TFJS_FILES = ("model.json", "weights.bin", "metadata.json")
MAX_FILE_BYTES = 512 * 1024**2
BASE_OUTPUT = "out_relu"
# MobileNetV2 widths keras.applications builds; each gives its own channel counts (see _infer_alpha).
ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
ACTIVATIONS = ("relu", "linear", "softmax", "sigmoid", "tanh")
EXPECTED = ("expected a Teachable Machine image export: converted_keras.zip (keras_model.h5 + labels.txt) or "
            "the TensorFlow.js download (model.json + weights.bin + metadata.json)")


@dataclass(frozen=True)
class DenseSpec:
    """One dense layer of the export's head, as its file describes it."""

    name: str
    units: int
    activation: str
    use_bias: bool


@dataclass(frozen=True)
class ExportFiles:
    """The export's files by base name, and how to name each one to the user."""

    data: dict[str, bytes]
    shown: dict[str, str]
    source: str

    def name(self, file: str) -> str:
        return self.shown.get(file, f"{file} (beside {self.source})")


@dataclass(frozen=True)
class TeachableExport:
    """Everything read from one export; ``weights`` maps ``layer/weight`` to its array."""

    format: str
    classes: tuple[str, ...]
    image_size: int
    alpha: float
    head: tuple[DenseSpec, ...]
    weights: dict = field(repr=False)
    files: dict[str, str] = field(default_factory=dict)
    source: str = ""
    metadata: dict = field(default_factory=dict)


def collect_files(path) -> ExportFiles:
    """The export's files from a zip, a folder, or one of its files (the others read from beside it).

    Raises:
        ModelImportError: naming ``path`` when it does not exist or holds no export files.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelImportError(f"'{path}' does not exist; {EXPECTED}.")
    if path.is_file() and zipfile.is_zipfile(path):
        return files_from_zip(path.read_bytes(), str(path))
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.name not in KERAS_FILES + TFJS_FILES:
        raise ModelImportError(f"'{path}' is not part of a Teachable Machine export; {EXPECTED}.")
    data, shown = {}, {}
    for name in KERAS_FILES + TFJS_FILES:
        if (folder / name).is_file():
            data[name], shown[name] = _read_capped(folder / name), str(folder / name)
    if not data:
        raise ModelImportError(f"'{path}' holds none of the files of a Teachable Machine export; {EXPECTED}.")
    return ExportFiles(data, shown, str(path))


def files_from_zip(data: bytes, source: str) -> ExportFiles:
    """The export files inside a zip's bytes (in any folder of it), read in memory."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ModelImportError(f"'{source}' is not a readable zip; {EXPECTED}.") from None
    found, shown = {}, {}
    with archive:
        for info in archive.infolist():
            name = PurePosixPath(info.filename).name
            if info.is_dir() or name not in KERAS_FILES + TFJS_FILES or info.filename.startswith("__MACOSX"):
                continue
            if name in found:
                raise ModelImportError(f"'{source}' holds two {name} files; zip one Teachable Machine export.")
            if info.file_size > MAX_FILE_BYTES:
                raise ModelImportError(f"{info.filename} in '{source}' is {info.file_size:,} bytes; a Teachable "
                                       f"Machine file is far smaller (limit {MAX_FILE_BYTES:,}).")
            try:
                found[name] = archive.read(info)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
                raise ModelImportError(f"{info.filename} in '{source}' cannot be extracted ({exc}); download "
                                       "the export again.") from None
            shown[name] = f"{info.filename} in '{source}'"
    if not found:
        raise ModelImportError(f"'{source}' holds none of the files of a Teachable Machine export; {EXPECTED}.")
    return ExportFiles(found, shown, source)


def read_export(files: ExportFiles) -> TeachableExport:
    """Parse and check an export's files (see the module docstring).

    Raises:
        ModelImportError: an audio or pose project, an unknown or embedded architecture, a missing or
            truncated file, or labels that do not match the output layer; the message names the file.
    """
    metadata = _metadata(files)
    if "keras_model.h5" in files.data:
        export = _read_keras(files, metadata)
    elif "model.json" in files.data:
        export = _read_tfjs(files, metadata)
    else:
        present = ", ".join(sorted(files.data))
        raise ModelImportError(f"'{files.source}' has {present} but no model (keras_model.h5 or model.json); "
                               f"{EXPECTED}.")
    return export


def _metadata(files: ExportFiles) -> dict:
    if "metadata.json" not in files.data:
        return {}
    name = files.name("metadata.json")
    metadata = _parse_json(files.data["metadata.json"], name)
    package = str(metadata.get("packageName", "")).lower() if isinstance(metadata, dict) else ""
    if not isinstance(metadata, dict):
        raise ModelImportError(f"{name} is not a Teachable Machine metadata file (expected a JSON object).")
    if "pose" in package:
        raise ModelImportError(f"{name} names {metadata['packageName']}: this is a Teachable Machine pose project. "
                               "Only image projects can be imported; export an image project instead.")
    if "speech" in package or "audio" in package or "tfjsSpeechCommandsVersion" in metadata or \
            "wordLabels" in metadata:
        raise ModelImportError(f"{name} describes a Teachable Machine audio project. Only image projects can be "
                               "imported; export an image project instead.")
    return metadata


def _read_keras(files: ExportFiles, metadata: dict) -> TeachableExport:
    import h5py

    name = files.name("keras_model.h5")
    if "labels.txt" not in files.data:
        raise ModelImportError(f"{name} came without its labels.txt (the class names); import the whole "
                               "converted_keras.zip, or put labels.txt beside keras_model.h5.")
    try:
        h5 = h5py.File(io.BytesIO(files.data["keras_model.h5"]), "r")
    except OSError:
        raise ModelImportError(f"{name} is not a readable Keras HDF5 file (truncated or not a model); download "
                               "the Keras export again.") from None
    with h5:
        config = h5.attrs.get("model_config")
        if config is None or "model_weights" not in h5:
            raise ModelImportError(f"{name} holds no model (only weights, or not a Keras model file); download "
                                   "the Keras export again.")
        topology = _parse_json(config.encode() if isinstance(config, str) else bytes(config), name)
        weights = _h5_weights(h5["model_weights"], name)
    classes = _labels_txt(files.data["labels.txt"], files.name("labels.txt"))
    return _assemble("keras", files, topology, weights, classes, files.name("labels.txt"), name, metadata)


def _h5_weights(group, name: str) -> dict:
    weights = {}
    try:
        for layer_name in group.attrs.get("layer_names", []):
            layer = group[_text(layer_name)]
            for weight_name in layer.attrs.get("weight_names", []):
                key = _text(weight_name)
                weights[key.removesuffix(":0")] = np.asarray(layer[key][()], dtype=np.float32)
    except (KeyError, OSError, ValueError) as exc:
        raise ModelImportError(f"{name} has unreadable weights ({exc}); download the Keras export again.") from None
    return weights


def _read_tfjs(files: ExportFiles, metadata: dict) -> TeachableExport:
    name = files.name("model.json")
    model = _parse_json(files.data["model.json"], name)
    if not isinstance(model, dict) or "modelTopology" not in model or "weightsManifest" not in model:
        raise ModelImportError(f"{name} is not a TensorFlow.js layers model (no modelTopology / weightsManifest).")
    if not metadata:
        raise ModelImportError(f"{name} came without its metadata.json (the class names); import the whole "
                               "TensorFlow.js download, or put metadata.json beside model.json.")
    labels = metadata.get("labels")
    if not isinstance(labels, list) or not labels:
        raise ModelImportError(f"{files.name('metadata.json')} lists no class labels; use the metadata.json of "
                               "the same download.")
    topology = model["modelTopology"]
    topology = topology.get("model_config", topology)
    weights = _tfjs_weights(model["weightsManifest"], files, name)
    return _assemble("tfjs", files, topology, weights, tuple(_clean_label(str(x)) for x in labels),
                     files.name("metadata.json"), name, metadata)


def _tfjs_weights(manifest, files: ExportFiles, name: str) -> dict:
    weights = {}
    for group in manifest:
        specs = group.get("weights", [])
        for spec in specs:
            if spec.get("dtype", "float32") != "float32" or "quantization" in spec:
                raise ModelImportError(f"{name} stores {spec.get('name')} quantized or as "
                                       f"{spec.get('dtype')}; only float32 exports (as Teachable Machine "
                                       "writes them) can be imported.")
        blob = b"".join(_weight_file(PurePosixPath(path).name, files, name) for path in group.get("paths", []))
        sizes = [int(np.prod(spec["shape"], dtype=np.int64)) * 4 for spec in specs]
        if len(blob) != sum(sizes):
            shown = files.name(PurePosixPath(group["paths"][-1]).name) if group.get("paths") else name
            state = "is truncated" if len(blob) < sum(sizes) else "is longer than expected"
            raise ModelImportError(f"{shown} {state}: it holds {len(blob):,} bytes but {name} lists "
                                   f"{sum(sizes):,}. Download the TensorFlow.js export again.")
        offset = 0
        for spec, size in zip(specs, sizes, strict=True):
            array = np.frombuffer(blob, dtype="<f4", count=size // 4, offset=offset)
            weights[spec["name"]] = array.reshape(spec["shape"]).astype(np.float32)
            offset += size
    return weights


def _weight_file(file: str, files: ExportFiles, name: str) -> bytes:
    if file not in files.data:
        raise ModelImportError(f"{files.name(file)} is missing: {name} keeps its weights there. Import the whole "
                               "TensorFlow.js download (zip, or model.json, weights.bin and metadata.json).")
    return files.data[file]


def _assemble(fmt, files, topology, weights, classes, labels_name, model_name, metadata) -> TeachableExport:
    image_size, head = _parse_topology(topology, model_name)
    alpha = _infer_alpha(weights, model_name)
    if head[-1].units != len(classes):
        raise ModelImportError(f"{labels_name} lists {len(classes)} classes but the output layer of {model_name} "
                               f"has {head[-1].units}; use the labels file of the same download.")
    for dense in head:
        _check_head_weights(dense, weights, model_name)
    hashes = {file: hashlib.sha256(data).hexdigest() for file, data in sorted(files.data.items())}
    kept = {key: metadata[key] for key in ("tmVersion", "packageName", "packageVersion", "modelName",
                                           "timeStamp") if key in metadata}
    return TeachableExport(format=fmt, classes=tuple(classes), image_size=image_size, alpha=alpha,
                           head=tuple(head), weights=weights, files=hashes, source=files.source, metadata=kept)


def _parse_topology(topology: dict, name: str) -> tuple[int, list[DenseSpec]]:
    """(input size, dense head) of TM's layout: MobileNetV2 to out_relu, global average pooling, dense layers."""
    leaves = [leaf for leaf in _flatten(topology) if leaf[0] not in ("InputLayer", "Dropout")]
    kinds = [kind for kind, _ in leaves]
    if not kinds or kinds[0] != "base" or kinds[1:2] != ["GlobalAveragePooling2D"] or \
            len(kinds) < 3 or set(kinds[2:]) != {"Dense"}:
        raise ModelImportError(f"{name} has layers {' > '.join(kinds) or 'none'}; expected Teachable Machine's "
                               "standard image model (MobileNetV2 > GlobalAveragePooling2D > Dense layers). "
                               "Embedded image models and other architectures cannot be imported.")
    image_size = _check_base(leaves[0][1], name)
    head = [_dense_spec(config, name) for _, config in leaves[2:]]
    if head[-1].activation != "softmax":
        raise ModelImportError(f"{name} ends in a {head[-1].activation} layer; expected softmax class "
                               "probabilities, as Teachable Machine's image models have.")
    return image_size, head


def _flatten(layer) -> list[tuple[str, dict]]:
    kind, config = layer.get("class_name"), layer.get("config") or {}
    if kind == "Sequential":
        inner = config.get("layers", []) if isinstance(config, dict) else config
        return [leaf for child in inner for leaf in _flatten(child)]
    if kind in ("Model", "Functional"):
        return [("base", config)]
    return [(str(kind), config)]


def _check_base(config: dict, name: str) -> int:
    layers = config.get("layers", [])
    names = {layer.get("name") or layer.get("config", {}).get("name") for layer in layers}
    outputs = [entry[0] for entry in config.get("output_layers", [])]
    if not {"Conv1", "block_16_project"} <= names or outputs != [BASE_OUTPUT]:
        raise ModelImportError(f"{name} is built on an unknown network (output {outputs or 'none'}; expected "
                               f"MobileNetV2 cut at '{BASE_OUTPUT}'). Embedded image models and other "
                               "architectures cannot be imported.")
    shape = None
    for layer in layers:
        if layer.get("class_name") == "InputLayer":
            inner = layer.get("config", {})
            shape = inner.get("batch_input_shape") or inner.get("batch_shape")
    if not shape or len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3 or not shape[1]:
        raise ModelImportError(f"{name} takes inputs of shape {shape}; expected square RGB images (None, S, S, 3). "
                               "Embedded (grayscale) image models cannot be imported.")
    return int(shape[1])


def _dense_spec(config: dict, name: str) -> DenseSpec:
    activation = config.get("activation", "linear")
    if activation not in ACTIVATIONS:
        raise ModelImportError(f"{name} has a dense layer with activation {activation!r}; expected one of "
                               f"{', '.join(ACTIVATIONS)}.")
    return DenseSpec(name=str(config.get("name")), units=int(config["units"]), activation=activation,
                     use_bias=bool(config.get("use_bias", True)))


def _check_head_weights(dense: DenseSpec, weights: dict, name: str) -> None:
    expected = [f"{dense.name}/kernel"] + ([f"{dense.name}/bias"] if dense.use_bias else [])
    missing = [key for key in expected if key not in weights]
    if missing:
        raise ModelImportError(f"{name} has no weights for {', '.join(missing)}; download the export again.")
    if weights[expected[0]].shape[-1] != dense.units:
        raise ModelImportError(f"{name}: {expected[0]} has shape {weights[expected[0]].shape}, not "
                               f"{dense.units} outputs; the file is inconsistent. Download the export again.")


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNetV2's channel rounding (as ``keras.applications.mobilenet_v2`` does it)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _infer_alpha(weights: dict, name: str) -> float:
    try:
        first, last = weights["Conv1/kernel"].shape[-1], weights["block_16_project/kernel"].shape[-1]
    except KeyError:
        raise ModelImportError(f"{name} has no MobileNetV2 weights (Conv1, block_16_project); expected a "
                               "Teachable Machine standard image model.") from None
    for alpha in ALPHAS:
        if make_divisible(32 * alpha) == first and make_divisible(320 * alpha) == last:
            return alpha
    raise ModelImportError(f"{name} has a MobileNetV2 of unknown width ({first} and {last} channels); expected "
                           f"one of the widths {', '.join(map(str, ALPHAS))}.")


def _labels_txt(data: bytes, name: str) -> tuple[str, ...]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelImportError(f"{name} is not UTF-8 text; expected one 'index name' line per class.") from None
    rows = []
    for position, line in enumerate(line for line in text.splitlines() if line.strip()):
        match = re.fullmatch(r"\s*(\d+)\s+(.*\S)\s*", line)
        rows.append((int(match.group(1)), match.group(2)) if match else (position, line.strip()))
    if sorted(index for index, _ in rows) != list(range(len(rows))):
        raise ModelImportError(f"{name} numbers its classes {[index for index, _ in rows]}; expected 0, 1, 2, ... "
                               "one line per class.")
    return tuple(_clean_label(label) for _, label in sorted(rows))


def _clean_label(label: str) -> str:
    return " ".join(label.split())


def _parse_json(data: bytes, name: str):
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        raise ModelImportError(f"{name} is not valid JSON (truncated?); download the export again.") from None


def _read_capped(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ModelImportError(f"'{path}' is {size:,} bytes; a Teachable Machine file is far smaller.")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelImportError(f"Cannot read '{path}': {exc.strerror or exc}.") from None


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
