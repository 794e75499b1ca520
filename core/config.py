"""Training configuration: one frozen dataclass, validated at the boundary, saved with every run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.errors import ConfigError

STRATEGIES = ("feature-extraction", "fine-tune", "from-scratch")
RESIZE_MODES = ("crop", "squash", "pad", "crop-lanczos")
# Centre crop, as ImageNet models were evaluated: measured against squash on the shared datasets' MobileNetV2
# embeddings (bench/bench_quality.py), held-out accuracy 145 -> 149 of 153 on hymenoptera, 44 -> 47 of 51 on
# brain_tumor_mri, the same on square images (sign_language_digits).
DEFAULT_RESIZE = "crop"
CLASS_WEIGHT_MODES = ("auto", "on", "off")
WEIGHTS_MODES = ("imagenet", "none")
DISTRIBUTION_MODES = ("auto", "default", "mirrored", "multi-worker")
HEAD_MODES = ("auto", "linear", "mlp", "keras")
# How a base model from a file expects its pixels: 0..255 as they are, 0..1, -1..1, or caffe BGR minus means;
# ``auto`` reads it from the model (it carries a Rescaling or Normalization layer of its own: raw).
INPUT_SCALINGS = ("auto", "raw", "unit", "symmetric", "caffe")
# A base model is kept (frozen, or fine-tuned), never replaced by random weights.
BASE_STRATEGIES = tuple(strategy for strategy in STRATEGIES if strategy != "from-scratch")
MAX_SEED = 2**32 - 1  # NumPy's and Keras' seeds are unsigned 32-bit
AUTO_LEARNING_RATE = 1e-3  # a Keras first phase's peak learning rate when none is given

# Presets the Train page offers; each is a partial TrainConfig.
# Every preset lets cross-validation choose the head on cached embeddings (``head="auto"``).
PRESETS: dict[str, dict] = {
    "Quick": {"strategy": "feature-extraction", "head": "linear", "augment": False},
    "Balanced": {"strategy": "feature-extraction", "head": "auto", "augment": False},
    "Best accuracy": {"strategy": "fine-tune", "head": "auto", "fine_tune_epochs": 10, "augment": False},
}


def setting(default=dataclasses.MISSING, *, help: str, choices: tuple | None = None, range: tuple | None = None,
            cli: str | None = "", metavar: str | None = None, unset: str | None = None):
    """A TrainConfig field declared with everything the CLI and the Train page offer it from.

    Args:
        default: The default (omit for a required field).
        help: What it means, in words for people (``--help`` and the Train page show it).
        choices: The values allowed, when they are a fixed list (``__post_init__`` refuses any other).
        range: ``(low, high)``, both allowed; a whole number from ``low`` to ``high`` for an ``int`` field.
        cli: The ``python -m core train`` option; empty: ``--`` and the name with dashes; None: no option of its
            own (the dataset is the command's positional argument).
        metavar: The placeholder ``--help`` shows for its value.
        unset: What ``None`` (or an empty string) means, shown as its default.
    """
    metadata = {"help": help, "choices": choices, "range": range, "cli": cli, "metavar": metavar, "unset": unset}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; ``TrainConfig(**json)`` rebuilds a saved one.

    Each field is declared once, with its help text, its choices or range (checked here) and its command-line
    option, in its metadata (``SETTINGS``): ``python -m core train --help`` and the Train page read them from there.
    """

    dataset_id: str = setting(help="The ingested dataset to train on.", cli=None)
    backbone: str = setting("mobilenet_v2", help="registry name of the pretrained network (core/models/backbones.py; the "
                            "Train page's table)")
    strategy: str = setting("feature-extraction", choices=STRATEGIES, help="feature-extraction: a head on the "
                            "frozen network's features; fine-tune: then its top layers trained gently at a low "
                            "learning rate; from-scratch: random weights, the whole network trained (the baseline)")
    image_size: int | None = setting(None, range=(32, 1024), metavar="PX", unset="the backbone's own input size",
                                     help="input side in pixels")
    resize: str = setting(DEFAULT_RESIZE, choices=RESIZE_MODES, help="how images reach the input size: crop "
                          "(centre square, as ImageNet models were evaluated), squash (stretched: keeps the edges of "
                          "long images), pad (letterboxed with black bars) or crop-lanczos (the centre crop with "
                          "Lanczos filtering, Teachable Machine's preparation)")
    head: str = setting("auto", choices=HEAD_MODES, help="auto: k-fold cross-validation on the cached features "
                        "picks among linear heads of several L2 strengths and a one-hidden-layer head with dropout "
                        "and weight decay; linear / mlp: cross-validation within that family; keras: a Keras head "
                        "trained for the epochs, learning rate, dropout and hidden units set here")
    epochs: int = setting(10, range=(1, 1000), help="epochs of a first phase that trains with Keras (the keras "
                          "head, augmentation, or from scratch)")
    fine_tune_epochs: int = setting(10, range=(0, 1000), help="epochs of the fine-tuning phase (fine-tune only)")
    fine_tune_layers: int | None = setting(None, range=(1, 10_000), metavar="K", unset="the whole backbone",
                                           help="top backbone layers unfrozen in fine-tuning (BatchNorm layers "
                                                "always stay frozen)")
    batch_size: int = setting(32, range=(1, 4096), help="images per batch (across workers the global batch, split "
                              "evenly over them)")
    learning_rate: float | None = setting(None, range=(1e-8, 1.0), metavar="LR", unset=f"{AUTO_LEARNING_RATE:g}",
                                          help="peak learning rate of a Keras first phase (cosine decay)")
    fine_tune_learning_rate: float = setting(1e-4, range=(1e-9, 1.0), help="peak learning rate of fine-tuning (one "
                                             "epoch of warm-up, then cosine decay); low, so the pretrained features "
                                             "are adjusted rather than overwritten")
    dropout: float = setting(0.2, range=(0.0, 0.9), help="dropout before the classifier layer of a Keras head")
    hidden_units: int = setting(0, range=(0, 8192), help="size of a hidden dense layer in a Keras head (0: none)")
    augment: bool = setting(False, help="random flips, rotation, zoom, shifts and contrast on training images; "
                            "slower (no feature cache)")
    class_weights: str = setting("auto", choices=CLASS_WEIGHT_MODES, help="weigh classes by their rarity: auto "
                                 "(on when the largest class is over 1.5 times the smallest), on or off")
    early_stopping_patience: int = setting(5, range=(0, 1000), help="epochs without improvement on the selection "
                                           "images before a Keras phase stops (0: off)")
    seed: int = setting(0, range=(0, MAX_SEED), help="makes runs repeatable")
    weights: str = setting("imagenet", choices=WEIGHTS_MODES, help="pretrained ImageNet weights, or none (random); "
                           "from-scratch always uses none")
    distribution: str = setting("auto", choices=DISTRIBUTION_MODES, help="auto (every GPU here, several workers "
                                "when TF_CONFIG names them), default (one device), mirrored (every GPU here) or "
                                "multi-worker (batch_size split over the workers; run the same command on each, with "
                                "its own TF_CONFIG)")
    base_model: str = setting("", metavar="RUN_ID_OR_PATH", unset="a registry backbone", help="start from a "
                              "finished run's model below its head, or from a .keras / .h5 model file (stored in the "
                              "workspace with its hash, saved configs name it file-<sha256[:12]>)")
    cut_layer: str = setting("", metavar="NAME", unset="the last pooled or flattened layer before its classifier",
                             help="with a model file: the layer whose output is the embedding")
    input_scaling: str = setting("auto", choices=INPUT_SCALINGS, help="with a model file: the pixels it expects: "
                                 "auto (read from the model: raw when it scales its own), raw (0-255), unit (0-1), "
                                 "symmetric (-1-1) or caffe (BGR minus ImageNet means)")

    def __post_init__(self):
        if not self.dataset_id:
            raise ConfigError("No dataset given. Ingest a zip on the Data page (or `python -m core ingest`) first.")
        for declared in SETTINGS.values():
            declared.check(getattr(self, declared.name))
        _check_base(self)
        if self.strategy == "from-scratch" and self.weights != "none":
            object.__setattr__(self, "weights", "none")

    @property
    def effective_learning_rate(self) -> float:
        """The first phase's peak learning rate, with ``None`` resolved (1e-3, decayed by a cosine schedule)."""
        return self.learning_rate if self.learning_rate is not None else AUTO_LEARNING_RATE

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


KINDS = {"str": str, "int": int, "float": float, "bool": bool}


@dataclass(frozen=True)
class Setting:
    """One TrainConfig field as the command line and the Train page offer it, read from its metadata."""

    name: str
    default: object
    help: str
    kind: type  # str, int, float or bool
    optional: bool  # None is allowed (and means ``unset``)
    choices: tuple | None = None
    range: tuple | None = None
    flag: str | None = None  # the ``python -m core train`` option, None when it has none of its own
    metavar: str | None = None
    unset: str | None = None

    @classmethod
    def of(cls, field: dataclasses.Field) -> Setting:
        kind, *others = (part.strip() for part in str(field.type).split("|"))
        meta = field.metadata
        flag = meta["cli"] if meta["cli"] != "" else "--" + field.name.replace("_", "-")
        default = None if field.default is dataclasses.MISSING else field.default
        return cls(field.name, default, meta["help"], KINDS[kind], "None" in others, meta["choices"], meta["range"],
                   flag, meta["metavar"], meta["unset"])

    @property
    def shown_default(self) -> str:
        """The default in words: ``--help`` shows it."""
        if self.default in (None, "") and self.unset:
            return self.unset
        if self.kind is bool:
            return "on" if self.default else "off"
        return str(self.default)

    def describe(self) -> str:
        """The help text with the default, as ``--help`` shows it."""
        return f"{self.help} (default: {self.shown_default})"

    def check(self, value) -> None:
        """ConfigError, in the usual one-line words, when ``value`` is not one of the choices or out of range."""
        if value is None and self.optional:
            return
        if self.choices is not None:
            _check_choice(self.name, value, self.choices)
        if self.range is not None:
            (_check_whole if self.kind is int else _check_range)(self.name, value, *self.range)


# Every TrainConfig field, declared once (its metadata), in the order of the dataclass.
SETTINGS: dict[str, Setting] = {field.name: Setting.of(field) for field in dataclasses.fields(TrainConfig)}


def _check_base(config: TrainConfig) -> None:
    if not config.base_model and (config.cut_layer or config.input_scaling != "auto"):
        raise ConfigError("cut_layer and input_scaling describe a base model; give base_model (--base-model "
                          "RUN_ID_OR_PATH) too, or leave them out for a registry backbone.")
    if config.base_model and config.strategy not in BASE_STRATEGIES:
        raise ConfigError(f"strategy='from-scratch' starts from random weights and would throw the base model "
                          f"{config.base_model!r} away; use feature-extraction or fine-tune with a base model.")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}. Pick one of those.")


def check_seed(seed, name: str = "seed") -> None:
    """A seed must be a whole number from 0 to 2**32 - 1 (ConfigError otherwise)."""
    _check_whole(name, seed, 0, MAX_SEED)


def _check_whole(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name}={value!r} is not allowed; use a whole number from {low} to {high}.")


def _check_range(name: str, value, low, high) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{name}={value!r} is out of range; use a number from {low} to {high}.")
