"""Model files a person brings as the base of a run: checked, loaded in safe mode, stored in the workspace.

``store_base_file`` takes a ``.keras`` (or legacy ``.h5``) file, refuses what cannot serve as a base with a message
that says why and what to do (not a model, ``Lambda`` layers or custom objects, no single RGB image input, too
large), and keeps the file under ``workspace/bases/file-<sha256[:12]>/`` with a ``base.json`` describing it: its
input size, whether it scales its own pixels, the layers it can be cut at with their output shapes, and the cut
found automatically (the last pooled or flattened layer before the classifier).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ModelImportError
from core.workspace import Workspace, atomic_write_json, read_json

FILE_PREFIX = "file-"
SUFFIXES = (".keras", ".h5", ".hdf5")
MAX_BASE_BYTES = 1024**3
MAX_BASE_PARAMS = 150_000_000
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
POOLING_CLASSES = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten")
SCALING_CLASSES = ("Rescaling", "Normalization")


@dataclass(frozen=True)
class StoredBase:
    """A model file kept in the workspace as a base (read from its ``base.json``)."""

    base_id: str
    file_name: str
    sha256: str
    size_bytes: int
    path: Path
    input_size: int | None
    carries_preprocessing: bool
    params: int
    candidates: list = field(default_factory=list)
    default_cut: str | None = None

    def candidate_names(self) -> list[str]:
        return [candidate["name"] for candidate in self.candidates]

    def describe_candidates(self) -> str:
        return ", ".join(f"{c['name']} {tuple(c['output_shape'])}" for c in self.candidates) or "none"


def bases_dir(workspace: Workspace) -> Path:
    return Path(workspace.root) / "bases"


def store_base_file(workspace: Workspace, source: str | os.PathLike, *, file_name: str | None = None) -> StoredBase:
    """Check ``source`` and keep a copy in the workspace; the same file twice is stored once.

    Raises:
        ModelImportError: naming the file and why it cannot be a base (and what to do instead).
    """
    source = Path(source)
    name = file_name or source.name
    _check_file(source, name)
    with open(source, "rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    base_id = FILE_PREFIX + sha256[:12]
    target = bases_dir(workspace) / base_id
    if (target / "base.json").exists():
        return load_stored_base(workspace, base_id)
    suffix = Path(name).suffix.lower().replace(".hdf5", ".h5")
    staging = workspace.staging_dir("base-")
    try:
        shutil.copyfile(source, staging / f"model{suffix}")
        model = load_base_model(staging / f"model{suffix}", name)
        facts = inspect_model(model, name)
        atomic_write_json(staging / "base.json", {"base_id": base_id, "file_name": name, "sha256": sha256,
                                                   "size_bytes": source.stat().st_size, "model_file": f"model{suffix}",
                                                   "stored_at": time.time(), **facts})
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, target)
        except OSError:  # stored by another session meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_stored_base(workspace, base_id)


def store_base_bytes(workspace: Workspace, data: bytes, file_name: str) -> StoredBase:
    """``store_base_file`` for an upload: the bytes go to a private folder of the workspace first."""
    staging = workspace.staging_dir("upload-")
    try:
        path = staging / ("upload" + Path(file_name).suffix.lower())
        path.write_bytes(data)
        return store_base_file(workspace, path, file_name=Path(file_name).name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def list_stored_bases(workspace: Workspace) -> list[StoredBase]:
    """Every model file stored in the workspace, newest first."""
    folder = bases_dir(workspace)
    found = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True) if folder.exists() else []:
        if (entry / "base.json").exists():
            found.append(load_stored_base(workspace, entry.name))
    return found


def load_stored_base(workspace: Workspace, base_id: str) -> StoredBase:
    """The stored base ``base_id`` (ModelImportError when it is not in this workspace)."""
    folder = bases_dir(workspace) / base_id
    meta = read_json(folder / "base.json") if base_id.startswith(FILE_PREFIX) and "/" not in base_id else None
    if not meta:
        raise ModelImportError(f"No stored base model {base_id!r} in {bases_dir(workspace)}. Upload the model file "
                               "again (Train page, or --base-model PATH).")
    return StoredBase(base_id=base_id, file_name=meta["file_name"], sha256=meta["sha256"],
                      size_bytes=meta["size_bytes"], path=folder / meta["model_file"],
                      input_size=meta.get("input_size"), carries_preprocessing=bool(meta["carries_preprocessing"]),
                      params=int(meta["params"]), candidates=meta["candidates"], default_cut=meta.get("default_cut"))


def _check_file(path: Path, name: str) -> None:
    if not path.is_file():
        raise ModelImportError(f"{name}: no such file. Give the path of a .keras or .h5 model file.")
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise ModelImportError(f"{name} is not a Keras model file (expected a name ending in .keras or .h5). "
                               "Save the model with model.save('model.keras') and bring that file.")
    size = path.stat().st_size
    if size > MAX_BASE_BYTES:
        raise ModelImportError(f"{name} is {size / 1e6:,.0f} MB; a base model may be at most "
                               f"{MAX_BASE_BYTES / 1e6:,.0f} MB here (it runs on every image, on a CPU). "
                               "Bring a smaller model (a MobileNet or EfficientNet) or cut it lower first.")
    with open(path, "rb") as handle:
        head = handle.read(8)
    is_zip = zipfile.is_zipfile(path)
    if (suffix == ".keras" and not is_zip) or (suffix != ".keras" and head != _HDF5_SIGNATURE):
        raise ModelImportError(f"{name} is not a saved Keras model (its bytes are not a {suffix} file). "
                               "Save the model with model.save('model.keras') and bring that file.")
    if suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise ModelImportError(f"{name} is a zip but not a saved Keras model (no config.json inside). "
                                       "Save the model with model.save('model.keras') and bring that file.")


def load_base_model(path: Path, name: str | None = None):
    """Load a base model file in safe mode, turning Keras' refusals into ModelImportError."""
    import keras

    name = name or path.name
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError... with long messages
        raise ModelImportError(_load_failure(name, exc)) from exc


def _load_failure(name: str, exc: Exception) -> str:
    text = " ".join(str(exc).split())
    if "Lambda" in text:
        return (f"{name} contains a Lambda layer (Python code stored in the file), which is refused: loading it "
                "could run any code. Replace the Lambda with built-in layers (Rescaling, Normalization...), "
                "save again and bring the new file.")
    if "could not be deserialized" in text or "Could not locate" in text or "Unknown layer" in text:
        return (f"{name} needs custom objects (layers or functions defined in someone's code), which cannot be "
                "loaded safely here. Rebuild the model from built-in Keras layers, or cut it below the custom "
                "part and save that, then bring the new file.")
    return f"{name} could not be loaded as a Keras model ({type(exc).__name__}: {text[:200]}). Save it again " \
           "with model.save('model.keras') and bring that file."


def inspect_model(model, name: str) -> dict:
    """Input size, own preprocessing, cut candidates and the automatic cut of a base model.

    Raises:
        ModelImportError: not one RGB image input, or too many parameters.
    """
    _check_image_input(model, name)
    params = int(model.count_params())
    if params > MAX_BASE_PARAMS:
        raise ModelImportError(f"{name} has {params / 1e6:,.0f} M parameters; a base model may have at most "
                               f"{MAX_BASE_PARAMS / 1e6:,.0f} M here. Bring a smaller model.")
    candidates = cut_candidates(model)
    if not candidates:
        raise ModelImportError(f"{name} has no layer whose output is a feature map or vector to cut at.")
    height = model.inputs[0].shape[1]
    return {"input_size": int(height) if height else None, "params": params,
            "carries_preprocessing": carries_preprocessing(model), "candidates": candidates,
            "default_cut": default_cut(model, candidates)}


def _check_image_input(model, name: str) -> None:
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise ModelImportError(f"{name} has {len(inputs)} inputs; a base model needs exactly one image input.")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ModelImportError(f"{name} takes input of shape {shape}, not RGB images (batch, height, width, 3). "
                               "Bring a model whose input is colour images.")
    if shape[1] != shape[2]:
        raise ModelImportError(f"{name} expects {shape[1]}x{shape[2]} images; Transfer Studio feeds square "
                               "images. Bring a model with a square (or unspecified) input size.")


def _output_shape(layer):
    try:
        output = layer.output
    except (AttributeError, ValueError):  # a layer used more than once has no single output
        return None
    if isinstance(output, (list, tuple)):
        return None
    return tuple(output.shape)


def cut_candidates(model) -> list[dict]:
    """Layers (in order) with one output of rank 2 (a vector) or 4 (a feature map)."""
    found = []
    for layer in model.layers:
        shape = _output_shape(layer)
        if type(layer).__name__ == "InputLayer" or shape is None or len(shape) not in (2, 4):
            continue
        pooled = type(layer).__name__ in POOLING_CLASSES or (len(shape) == 2 and hasattr(layer, "layers"))
        found.append({"name": layer.name, "class": type(layer).__name__,
                      "output_shape": [None if d is None else int(d) for d in shape], "pooled": pooled})
    return found


def default_cut(model, candidates: list[dict]) -> str | None:
    """The automatic cut: the model's own output when it is a feature model (pooled, or a feature map, which
    gets average-pooled), else the last pooled or flattened layer before the classifier; None when there is none."""
    last = model.layers[-1]
    if candidates and candidates[-1]["name"] == last.name:
        final = candidates[-1]
        if final["pooled"] or len(final["output_shape"]) == 4:
            return final["name"]
    pooled = [candidate["name"] for candidate in candidates if candidate["pooled"] and candidate["name"] != last.name]
    return pooled[-1] if pooled else None


def flat_layers(model) -> list:
    """Every layer of ``model``, nested models opened, in order."""
    out = []
    for layer in model.layers:
        out.extend(flat_layers(layer) if hasattr(layer, "layers") else [layer])
    return out


def carries_preprocessing(model) -> bool:
    """True when a Rescaling or Normalization layer comes before the first layer with weights."""
    for layer in flat_layers(model):
        if type(layer).__name__ in SCALING_CLASSES:
            return True
        if any("kernel" in weight.path for weight in layer.weights):
            return False
    return False
