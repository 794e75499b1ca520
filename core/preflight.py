"""Checks a training config can run here before anything is recorded: a mistake leaves no failed run behind."""

from __future__ import annotations

from core.config import TrainConfig
from core.errors import ConfigError


def check_trainable(config: TrainConfig):
    """Check the backbone, its input size and its weights for ``config``, before a run is created.

    ImageNet weights that are on neither the weights folder nor the Keras cache are downloaded here (once, into
    the Keras cache, where the run finds them).

    Returns:
        The ``core.weights.ResolvedWeights`` the run will be built with.

    Raises:
        ConfigError: an unknown backbone or an input size it does not offer.
        WeightsError: ImageNet weights asked for that can be neither found nor downloaded.
    """
    from core.backbones import get_backbone
    from core.weights import resolve_weights

    spec = get_backbone(config.backbone)
    image_size = config.image_size or spec.default_size
    if image_size not in spec.allowed_sizes:
        raise ConfigError(f"image_size={image_size} is not allowed for {spec.display_name}; use one of "
                          f"{', '.join(map(str, spec.allowed_sizes))}.")
    return resolve_weights(spec, image_size, getattr(config, "weights", "imagenet"))  # health jobs: ImageNet
