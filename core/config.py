"""Training configuration: one frozen dataclass, validated at the boundary, saved with every run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.errors import ConfigError

STRATEGIES = ("feature-extraction", "fine-tune", "from-scratch")
RESIZE_MODES = ("squash", "crop", "pad", "crop-lanczos")
# Centre crop, as ImageNet models were evaluated: measured against squash on the shared datasets' MobileNetV2
# embeddings (bench/bench_quality.py), held-out accuracy 145 -> 149 of 153 on hymenoptera, 44 -> 47 of 51 on
# brain_tumor_mri, the same on square images (sign_language_digits).
DEFAULT_RESIZE = "crop"
CLASS_WEIGHT_MODES = ("auto", "on", "off")
DISTRIBUTION_MODES = ("auto", "default", "mirrored", "multi-worker")
HEAD_MODES = ("auto", "linear", "mlp", "keras")
# How a base model from a file expects its pixels: 0..255 as they are, 0..1, -1..1, or caffe BGR minus means;
# ``auto`` reads it from the model (it carries a Rescaling or Normalization layer of its own: raw).
INPUT_SCALINGS = ("auto", "raw", "unit", "symmetric", "caffe")

# Presets the Train page offers; each is a partial TrainConfig.
# Every preset lets cross-validation choose the head on cached embeddings (``head="auto"``).
PRESETS: dict[str, dict] = {
    "Quick": {"strategy": "feature-extraction", "head": "linear", "augment": False},
    "Balanced": {"strategy": "feature-extraction", "head": "auto", "augment": False},
    "Best accuracy": {"strategy": "fine-tune", "head": "auto", "fine_tune_epochs": 10, "augment": False},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; ``TrainConfig(**json)`` rebuilds a saved one.

    Attributes:
        dataset_id: The ingested dataset to train on.
        backbone: Registry name of the pretrained base (see ``core.backbones``).
        strategy: ``feature-extraction``, ``fine-tune`` or ``from-scratch``.
        image_size: Input side in pixels; ``None`` takes the backbone's default.
        resize: How images reach the input size: ``squash``, ``crop``, ``pad`` or ``crop-lanczos``.
        head: How the head on frozen features is made: ``auto`` (k-fold cross-validation on the cached
            embeddings picks among linear heads of several L2 strengths and a one-hidden-layer head with dropout
            and weight decay), ``linear`` or ``mlp`` (cross-validation within that family), or ``keras`` (a Keras
            head trained for ``epochs`` with ``learning_rate``, ``dropout`` and ``hidden_units``).
        epochs: Epochs of the first phase when it trains with Keras (the ``keras`` head, augmentation, or the
            whole network from scratch).
        fine_tune_epochs: Epochs of the fine-tuning phase (``fine-tune`` only).
        fine_tune_layers: Top backbone layers to unfreeze; ``None`` unfreezes the whole backbone (BatchNorm
            layers always stay frozen).
        batch_size: Images per batch.
        learning_rate: Peak learning rate of a Keras first phase (cosine decay); ``None`` picks 1e-3.
        fine_tune_learning_rate: Peak learning rate of the fine-tuning phase (one epoch of warm-up, then cosine
            decay); low, so the pretrained features are adjusted rather than overwritten.
        dropout: Dropout before the classifier layer.
        hidden_units: Size of an optional hidden dense layer in the head (0: none).
        augment: Random flips, rotation, zoom, translation and contrast on training images.
        class_weights: ``auto`` (on when the largest class is over 1.5x the smallest), ``on`` or ``off``.
        early_stopping_patience: Epochs without improvement on the selection images before stopping (0: off).
        seed: Makes runs repeatable.
        weights: ``imagenet`` or ``none``; ``from-scratch`` always uses ``none``.
        distribution: ``auto`` (MirroredStrategy on several GPUs, MultiWorkerMirroredStrategy when ``TF_CONFIG``
            names workers), ``default``, ``mirrored`` or ``multi-worker`` (``batch_size`` is then the global batch,
            split evenly over the workers).
        base_model: Empty for a registry backbone; else the base the run starts from: a finished run's id (its
            model below the head) or ``file-<sha256[:12]>``, a model file stored in the workspace
            (see ``core.base_models``).
        cut_layer: For a model file: the layer whose output is the embedding (empty: found automatically).
        input_scaling: For a model file: how it expects its pixels (see ``INPUT_SCALINGS``).
    """

    dataset_id: str
    backbone: str = "mobilenet_v2"
    strategy: str = "feature-extraction"
    image_size: int | None = None
    resize: str = DEFAULT_RESIZE
    head: str = "auto"
    epochs: int = 10
    fine_tune_epochs: int = 10
    fine_tune_layers: int | None = None
    batch_size: int = 32
    learning_rate: float | None = None
    fine_tune_learning_rate: float = 1e-4
    dropout: float = 0.2
    hidden_units: int = 0
    augment: bool = False
    class_weights: str = "auto"
    early_stopping_patience: int = 5
    seed: int = 0
    weights: str = "imagenet"
    distribution: str = "auto"
    base_model: str = ""
    cut_layer: str = ""
    input_scaling: str = "auto"

    def __post_init__(self):
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("resize", self.resize, RESIZE_MODES)
        _check_choice("class_weights", self.class_weights, CLASS_WEIGHT_MODES)
        _check_choice("distribution", self.distribution, DISTRIBUTION_MODES)
        _check_choice("weights", self.weights, ("imagenet", "none"))
        _check_choice("head", self.head, HEAD_MODES)
        if not self.dataset_id:
            raise ConfigError("No dataset given. Ingest a zip on the Data page (or `python -m core ingest`) first.")
        _check_whole("epochs", self.epochs, 1, 1000)
        _check_whole("fine_tune_epochs", self.fine_tune_epochs, 0, 1000)
        _check_whole("batch_size", self.batch_size, 1, 4096)
        _check_whole("early_stopping_patience", self.early_stopping_patience, 0, 1000)
        _check_whole("hidden_units", self.hidden_units, 0, 8192)
        check_seed(self.seed)
        if self.learning_rate is not None:
            _check_range("learning_rate", self.learning_rate, 1e-8, 1.0)
        _check_range("fine_tune_learning_rate", self.fine_tune_learning_rate, 1e-9, 1.0)
        _check_range("dropout", self.dropout, 0.0, 0.9)
        if self.image_size is not None:
            _check_whole("image_size", self.image_size, 32, 1024)
        if self.fine_tune_layers is not None:
            _check_whole("fine_tune_layers", self.fine_tune_layers, 1, 10_000)
        _check_base(self)
        if self.strategy == "from-scratch" and self.weights != "none":
            object.__setattr__(self, "weights", "none")

    @property
    def effective_learning_rate(self) -> float:
        """The first phase's peak learning rate, with ``None`` resolved (1e-3, decayed by a cosine schedule)."""
        return self.learning_rate if self.learning_rate is not None else 1e-3

    @property
    def needs_selection(self) -> bool:
        """True when the run chooses something on held-out images (the best epoch of a Keras phase)."""
        keras_phase_one = self.strategy == "from-scratch" or self.augment or self.head == "keras"
        return keras_phase_one or (self.strategy == "fine-tune" and self.fine_tune_epochs > 0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Rebuild from saved JSON, ignoring keys this version does not know."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def _check_base(config: TrainConfig) -> None:
    _check_choice("input_scaling", config.input_scaling, INPUT_SCALINGS)
    if not config.base_model and (config.cut_layer or config.input_scaling != "auto"):
        raise ConfigError("cut_layer and input_scaling describe a base model; give base_model (--base-model "
                          "RUN_ID_OR_PATH) too, or leave them out for a registry backbone.")
    if config.base_model and config.strategy == "from-scratch":
        raise ConfigError(f"strategy='from-scratch' starts from random weights and would throw the base model "
                          f"{config.base_model!r} away; use feature-extraction or fine-tune with a base model.")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}. Pick one of those.")


MAX_SEED = 2**32 - 1  # NumPy's and Keras' seeds are unsigned 32-bit


def check_seed(seed, name: str = "seed") -> None:
    """A seed must be a whole number from 0 to 2**32 - 1 (ConfigError otherwise)."""
    _check_whole(name, seed, 0, MAX_SEED)


def _check_whole(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name}={value!r} is not allowed; use a whole number from {low} to {high}.")


def _check_range(name: str, value, low, high) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{name}={value!r} is out of range; use a number from {low} to {high}.")
