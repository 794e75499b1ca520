"""One plan per run: what a ``TrainConfig`` means on this machine for one dataset, worked out once.

``plan_run`` turns the settings into facts: the backbone's registry entry (or the base a run starts from), the input
size checked against the sizes it allows, the weights resolved (with the fingerprint the caches are keyed by), the
layers fine-tuning unfreezes and the embedding-cache key. The job manager builds it before a run is queued (a bad
setting fails then, and nothing is queued), the Train page shows it and estimates the run's time from it
(``estimate``), the worker trains from it, and the embedding map and the model anatomy read it. It is frozen:
nobody downstream works any of these facts out again.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import TrainConfig
from core.errors import ConfigError
from core.models.backbones import BackboneSpec, get_backbone
from core.models.weights import ResolvedWeights


@dataclass(frozen=True)
class RunPlan:
    """The facts of one run, from its settings and its dataset.

    Attributes:
        config: The settings.
        dataset_id: The dataset it trains on.
        spec: Registry entry of the backbone (for a base run or model file: the one describing it).
        image_size: Input side in pixels, one the backbone allows.
        weights: The weights the model is built with; None while the ImageNet file is neither here nor downloaded
            (``resolve=False``: the Train page does not download while a person is choosing).
        base: ``core.models.base_models.Base`` when a run or a model file is the base, else None.
        start: ``core.training.continuation.StartingPoint`` when the run continues an earlier one, else None.
    """

    config: TrainConfig
    dataset_id: str
    spec: BackboneSpec
    image_size: int
    weights: ResolvedWeights | None
    base: object | None = None
    start: object | None = None

    @property
    def uses_features(self) -> bool:
        """Phase 1 trains a head on cached embeddings (not on images through Keras)."""
        return self.config.strategy != "from-scratch" and not self.config.augment

    @property
    def uses_keras_steps(self) -> bool:
        """Some phase trains on images with Keras (its speed is a Keras forward speed)."""
        return self.config.strategy != "feature-extraction" or self.config.augment

    @property
    def fingerprint(self) -> str | None:
        return self.weights.fingerprint if self.weights is not None else None

    @property
    def feature_key(self) -> str | None:
        """Key of the dataset's embeddings in the cache (None until the weights are known)."""
        from core.models.features import feature_key

        if self.fingerprint is None:
            return None
        return feature_key(self.dataset_id, self.spec.name, self.image_size, self.config.resize, self.fingerprint,
                           seed=self.config.seed)

    @property
    def fine_tune_layers(self) -> int | None:
        """Top backbone layers fine-tuning unfreezes: the setting; None for the whole backbone; 0 without
        a fine-tuning phase."""
        if self.config.strategy != "fine-tune" or not self.config.fine_tune_epochs:
            return 0
        return self.config.fine_tune_layers

    def features_cached(self, workspace) -> bool:
        from core.models.features import cached_features

        return self.feature_key is not None and cached_features(workspace, self.feature_key) is not None

    def describe(self) -> dict:
        """For the run record and the Train page."""
        layers = self.fine_tune_layers
        return {"backbone": self.spec.name, "backbone_name": self.spec.display_name, "image_size": self.image_size,
                "weights": self.weights.description if self.weights else "ImageNet (to be downloaded)",
                "weights_fingerprint": self.fingerprint, "feature_key": self.feature_key,
                "fine_tune_layers": "none" if layers == 0 else "whole backbone" if layers is None else layers,
                "base": getattr(self.base, "record", None),
                "continues": getattr(self.start, "source_run", None)}

    def estimate(self, workspace, dataset) -> Estimate:
        """The run's time from speeds measured here on the runtimes it will use (``core.models.speed``)."""
        from core.models.speed import estimate_seconds, plan_for, speed_figures

        figures = speed_figures(workspace, self.spec.name, self.image_size)
        extraction = plan_for(self.spec.name, self.image_size, weights=self.config.weights,
                              num_images=len(dataset.entries), fingerprint=self.fingerprint)
        features_figure, keras_figure = figures.get(extraction.runtime), figures.get("keras")
        cached = self.features_cached(workspace)
        missing = ("features" if self.uses_features and not cached and features_figure is None else
                   "keras" if self.uses_keras_steps and keras_figure is None else None)
        seconds = None if missing else estimate_seconds(
            self.config, images_per_s=keras_figure.images_per_s if keras_figure else None,
            num_train=len(dataset.split_entries("train")), num_total=len(dataset.entries), features_cached=cached,
            features_images_per_s=features_figure.images_per_s if features_figure else None,
            conversion_s=extraction.conversion_estimate_s if extraction.convert_now else 0.0)
        measured = features_figure if self.uses_features and features_figure else keras_figure or next(
            iter(figures.values()), None)
        return Estimate(seconds=seconds, missing=missing, extraction=extraction, measured=measured,
                        features_cached=cached,
                        converts_first=extraction.convert_now and self.uses_features and not cached)


@dataclass(frozen=True)
class Estimate:
    """A run's expected seconds (None: ``missing`` names the speed not measured here yet: ``features`` or
    ``keras``), the extraction plan and the speed figure it rests on."""

    seconds: float | None
    missing: str | None
    extraction: object
    measured: object | None
    features_cached: bool
    converts_first: bool


def plan_run(config: TrainConfig, workspace, *, dataset=None, start=None, resolve: bool = True) -> RunPlan:
    """The plan of a run of ``config`` on its dataset.

    Args:
        config: The settings.
        workspace: Where the dataset, a base model and the caches are.
        dataset: The loaded dataset (default: loaded from ``workspace``).
        start: For a run that continues an earlier one, its ``core.training.continuation.StartingPoint`` (the
            model it starts from, which fixes the backbone, size and weights).
        resolve: Resolve ImageNet weights that are not here by downloading them (as a run must); False leaves
            ``weights`` None instead (a page previewing the plan).

    Raises:
        ConfigError: an unknown backbone, or an input size it does not allow; a cut layer or scaling that does not
            fit a base model. RunError / ModelImportError: a base that cannot be used. WeightsError: ImageNet
            weights that can be neither found nor downloaded (``resolve``).
    """
    from core.data.datasets import load_dataset

    dataset = dataset or load_dataset(workspace, config.dataset_id)
    if start is not None:
        return RunPlan(config, dataset.id, start.spec, checked_size(start.spec, config.image_size), start.weights,
                       start=start)
    if config.base_model:
        from core.models.base_models import resolve_base

        base = resolve_base(workspace, config.base_model, config.cut_layer, config.input_scaling, config.image_size)
        return RunPlan(config, dataset.id, base.spec, checked_size(base.spec, config.image_size), base.weights,
                       base=base)
    spec = get_backbone(config.backbone)
    image_size = checked_size(spec, config.image_size)
    return RunPlan(config, dataset.id, spec, image_size, _weights(spec, image_size, config.weights, resolve))


def checked_size(spec: BackboneSpec, image_size: int | None) -> int:
    """``image_size`` (None: the backbone's own), refused when the backbone does not allow it."""
    size = int(image_size or spec.default_size)
    if size not in spec.allowed_sizes:
        raise ConfigError(f"image_size={size} is not allowed for {spec.display_name}; use one of "
                          f"{', '.join(map(str, spec.allowed_sizes))}.")
    return size


def _weights(spec: BackboneSpec, image_size: int, weights: str, resolve: bool) -> ResolvedWeights | None:
    from core.models.weights import resolve_weights, weights_available

    if weights == "imagenet" and not resolve and not weights_available(spec, image_size):
        return None
    return resolve_weights(spec, image_size, weights)
