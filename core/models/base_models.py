"""Bases other than the registry backbones: a finished run's model below its head, or a model file.

Either way the new run's model keeps the studio's layout (``image`` -> ``preprocess_*`` -> ``backbone`` -> ``pool``
-> ``head``), so training, the embedding cache, Grad-CAM, Evaluate, Predict and the exports treat it as any other:

- a run: its own ``preprocess_*`` layers, ``backbone`` and ``pool`` (weights as that run left them), a new head;
- a file (``core.models.base_files``): the pixel scaling asked for, then the file's model up to its last feature map
  at or below the cut layer as ``backbone``, and the layers from that map to the cut (or average pooling when the
  cut is a feature map itself) as ``pool``.

The embedding cache and the converted extractors are keyed by the base: the run's model file hash, or the file's
hash with the cut layer and the scaling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from core.errors import ConfigError, RunError
from core.models.backbones import BACKBONES, BackboneSpec
from core.models.base_files import FILE_PREFIX, load_base_model, load_stored_base, store_base_file
from core.models.weights import ResolvedWeights

SCALING_WORDS = {"raw": "0-255 as they are", "unit": "0-1", "symmetric": "-1-1", "caffe": "caffe BGR minus means"}
FREE_SIZES = (96, 128, 160, 192, 224, 256, 299)  # offered when a model file leaves its input size open


@dataclass(frozen=True)
class Base:
    """The resolved base of a run: what the registry entry, the weights and the record say about it."""

    kind: str  # "run" or "file"
    spec: BackboneSpec
    image_size: int
    weights: ResolvedWeights
    record: dict
    source: str  # the run id or the stored file's path
    cut_layer: str = "pool"
    input_scaling: str = "raw"

    def build_classifier(self, *, num_classes: int, dropout: float = 0.2, hidden_units: int = 0, seed: int = 0):
        """The new run's model: this base, frozen, with a fresh head of ``num_classes`` outputs."""
        import keras

        from core.models.classifier import MODEL_NAME_SUFFIX, build_head

        preprocess, backbone, pool = self._parts()
        backbone.trainable = False
        pool.trainable = False
        inputs = keras.Input((self.image_size, self.image_size, 3), dtype="float32", name="image")
        x = inputs
        for layer in preprocess:
            x = layer(x)
        embedding = pool(backbone(x, training=False))
        if len(embedding.shape) != 2:
            raise ConfigError(f"The cut at {self.cut_layer!r} gives features of shape {tuple(embedding.shape)}; "
                              "pick a layer whose output is a vector or a feature map.")
        head = build_head(int(embedding.shape[-1]), num_classes, dropout=dropout, hidden_units=hidden_units,
                          seed=seed)
        return keras.Model(inputs, head(embedding), name=self.spec.name + MODEL_NAME_SUFFIX)

    def _parts(self):
        """``(preprocess layers, backbone, pool)`` of the base, freshly loaded from its file."""
        from pathlib import Path

        if self.kind == "run":
            import keras

            from core.models.classifier import preprocess_layers_of

            model = keras.saving.load_model(self.source, safe_mode=True)
            # A fresh pool: the run's own would answer ``.output`` from the run's graph, not the new one.
            return preprocess_layers_of(model), model.get_layer("backbone"), _copy(model.get_layer("pool"))
        model = load_base_model(Path(self.source), self.record["file_name"])
        backbone, pool = split_at_feature_map(model, self.cut_layer)
        return scaling_layers(self.input_scaling), backbone, pool


def scaling_layers(scaling: str) -> list:
    """Built-in layers turning raw 0..255 RGB into what a model of ``scaling`` expects."""
    import keras

    from core.models.classifier import preprocessing_layers

    if scaling == "unit":
        return [keras.layers.Rescaling(1.0 / 255.0, name="preprocess_scale")]
    kind = {"raw": "builtin", "symmetric": "tf", "caffe": "caffe"}.get(scaling)
    if kind is None:
        raise ConfigError(f"input_scaling={scaling!r}; use one of raw, unit, symmetric, caffe.")
    return preprocessing_layers(kind)


def split_at_feature_map(model, cut_layer: str):
    """``(backbone, pool)``: the model up to its last feature map at or below ``cut_layer``, and the rest to it."""
    import keras

    layer = model.get_layer(cut_layer)
    map_layer, chain = _feature_map_below(layer)
    if map_layer is None:  # no feature map on a straight path below: the cut's output is the embedding as it is
        backbone = keras.Model(model.inputs, layer.output, name="backbone")
        return backbone, keras.layers.Identity(name="pool")
    backbone = keras.Model(model.inputs, map_layer.output, name="backbone")
    if not chain:
        return backbone, keras.layers.GlobalAveragePooling2D(name="pool")
    if len(chain) == 1:
        return backbone, _clone(chain[0], name="pool")
    inputs = keras.Input(tuple(map_layer.output.shape[1:]), name="feature_map")
    x = inputs
    for original in chain:
        x = _call_clone(original, x)
    return backbone, keras.Model(inputs, x, name="pool")


def _feature_map_below(layer):
    """The nearest layer at or below ``layer`` with a 4-D output, through single-input layers, and the chain above it."""
    chain, current = [], layer
    while len(current.output.shape) != 4:
        inbound = current.input
        if isinstance(inbound, (list, tuple)) or type(current).__name__ == "InputLayer":
            return None, []
        chain.append(current)
        current = inbound._keras_history[0]
    if type(current).__name__ == "InputLayer":
        return None, []
    return current, list(reversed(chain))


def _clone(layer, name: str | None = None):
    config = layer.get_config()
    if name:
        config["name"] = name
    return type(layer).from_config(config)


def _copy(layer):
    """A copy of ``layer`` with its weights (built on its own input shape first)."""
    copy = _clone(layer)
    if layer.weights:
        if not hasattr(layer, "layers"):  # a model is built by from_config already
            copy.build(layer.input.shape)
        copy.set_weights(layer.get_weights())
    return copy


def _call_clone(original, x):
    clone = _clone(original)
    y = clone(x)
    clone.set_weights(original.get_weights())
    return y


def resolve_base(workspace, base_model: str, cut_layer: str = "", input_scaling: str = "auto",
                 image_size: int | None = None) -> Base:
    """What ``base_model`` (a run id, ``file-<hash>`` or a model file's path) is, checked without loading it.

    Raises:
        ConfigError: a cut layer the model does not have, a scaling that cannot be read from it, a bad size.
        RunError: a run that does not exist or has no saved model. ModelImportError: a bad model file.
    """
    from pathlib import Path

    if base_model.startswith(FILE_PREFIX) and not Path(base_model).exists():
        return _file_base(workspace, load_stored_base(workspace, base_model), cut_layer, input_scaling, image_size)
    path = Path(base_model).expanduser()
    if path.is_file() or path.suffix.lower() in (".keras", ".h5", ".hdf5"):
        return _file_base(workspace, store_base_file(workspace, path), cut_layer, input_scaling, image_size)
    return _run_base(workspace, base_model, cut_layer, input_scaling, image_size)


def _run_base(workspace, run_id: str, cut_layer: str, input_scaling: str, image_size: int | None) -> Base:
    from core.runs import load_run, model_path

    try:
        record = load_run(workspace, run_id)
    except RunError:
        raise RunError(f"--base-model {run_id!r} is neither a model file (.keras, .h5) nor a run of this "
                       "workspace. See `python -m core runs` for the runs.") from None
    path = model_path(workspace, run_id)
    if not path.exists():
        raise RunError(f"Run {run_id} has no saved model (status: {record.get('status')}); pick a finished run.")
    if cut_layer not in ("", "pool") or input_scaling not in ("auto", "raw"):
        raise ConfigError(f"Run {run_id} is cut below its head and keeps its own preprocessing; cut_layer and "
                          "input_scaling apply to model files only. Leave them out.")
    size = int(record.get("image_size") or 224)
    if image_size not in (None, size):
        raise ConfigError(f"Run {run_id} takes {size} px images; image_size={image_size} does not fit it.")
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    source_config = record.get("config") or {}
    below = (record.get("base") or {}).get("description") or source_config.get("backbone", "?")
    spec = _spec("run-" + digest[:12], f"run {run_id} (its {below} below the head)", size, count_params(record))
    description = f"run {run_id} (model sha256 {digest[:12]}; {below} below its head)"
    weights = ResolvedWeights(None, f"from run {run_id} ({record.get('weights')})", "run-" + digest[:12])
    info = {"kind": "run", "run_id": run_id, "model_sha256": digest, "image_size": size,
            "description": description}
    return Base("run", spec, size, weights, info, str(path))


def _file_base(workspace, stored, cut_layer: str, input_scaling: str, image_size: int | None) -> Base:
    cut = cut_layer or stored.default_cut
    if not cut:
        raise ConfigError(f"{stored.file_name}: no pooled or flattened layer found to cut at; pick one with "
                          f"--cut-layer NAME, one of: {stored.describe_candidates()}.")
    if cut not in stored.candidate_names():
        raise ConfigError(f"{stored.file_name} has no layer {cut!r} to cut at; use one of: "
                          f"{stored.describe_candidates()}.")
    scaling = input_scaling
    if scaling == "auto":
        if not stored.carries_preprocessing:
            raise ConfigError(f"{stored.file_name} does not scale its own pixels (no Rescaling or Normalization "
                              "layer at its input); say how it expects them: --input-scaling raw (0-255), unit "
                              "(0-1), symmetric (-1-1: MobileNet, Inception, Xception) or caffe (ResNet50, VGG).")
        scaling = "raw"
    size = stored.input_size or image_size or 224
    if stored.input_size and image_size not in (None, stored.input_size):
        raise ConfigError(f"{stored.file_name} takes {stored.input_size} px images; image_size={image_size} does "
                          "not fit it.")
    key = hashlib.sha256(f"{cut}|{scaling}".encode()).hexdigest()[:8]
    spec = _spec(stored.base_id, f"{stored.file_name} (cut at {cut})", size, stored.params,
                 sizes=(stored.input_size,) if stored.input_size else FREE_SIZES)
    description = (f"uploaded file {stored.file_name} (sha256 {stored.sha256[:12]}), cut at {cut}, "
                   f"pixels {scaling} ({SCALING_WORDS[scaling]})")
    weights = ResolvedWeights(None, description, f"{stored.base_id}-{key}")
    info = {"kind": "file", "base_id": stored.base_id, "file_name": stored.file_name, "sha256": stored.sha256,
            "cut_layer": cut, "input_scaling": scaling, "image_size": size, "description": description}
    return Base("file", spec, size, weights, info, str(stored.path), cut_layer=cut, input_scaling=scaling)


def _spec(name: str, display_name: str, size: int, params: int, sizes=None) -> BackboneSpec:
    return replace(BACKBONES["mobilenet_v2"], name=name, display_name=display_name, constructor="", default_size=size,
                   allowed_sizes=tuple(sizes or (size,)), params=int(params), size_mb=round(params * 4 / 1e6, 1),
                   top1=0.0, preprocessing="builtin", guidance="", weights_pattern="", keras_module="",
                   fine_tune_from="", fine_tune_after="", fine_tune_layers=0, constructor_kwargs={},
                   size_note="4 bytes per parameter", top1_note="not measured on ImageNet")


def count_params(record: dict) -> int:
    """A run's base parameter count, as far as its record tells (the registry's figure, else a rough 5 M)."""
    spec = BACKBONES.get((record.get("config") or {}).get("backbone", ""))
    return spec.params if spec else 5_000_000


def base_settings(workspace, base_model: str, cut_layer: str = "", input_scaling: str = "auto",
                  image_size: int | None = None) -> dict:
    """``TrainConfig`` keyword arguments for a run on ``base_model``, every choice resolved (a file is stored)."""
    base = resolve_base(workspace, base_model, cut_layer, input_scaling, image_size)
    reference = base.record.get("run_id") or base.record["base_id"]
    return {"backbone": base.spec.name, "base_model": reference, "cut_layer": base.cut_layer if base.kind == "file"
            else "", "input_scaling": base.input_scaling, "image_size": base.image_size}


def describe_base(record: dict) -> str:
    """One line for people: what a run's base was (registry backbone, run, or uploaded file)."""
    if record.get("base"):
        return record["base"]["description"]
    config = record.get("config") or {}
    spec = BACKBONES.get(config.get("backbone", ""))
    name = spec.display_name if spec else config.get("backbone", "?")
    if config.get("base_model"):
        return f"{config['base_model']} (cut at {config.get('cut_layer') or 'pool'})"
    return f"{name} ({'ImageNet' if config.get('weights') == 'imagenet' else config.get('weights', '?')})"


def spec_of_based_run(record: dict) -> BackboneSpec:
    """A registry-like entry for a run trained on a base (its model is continued as it is)."""
    size = int(record.get("image_size") or 224)
    name = (record.get("config") or {}).get("backbone", "base")
    return _spec(name, (record.get("base") or {}).get("description", name), size, count_params(record))
