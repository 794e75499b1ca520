"""Checks a training config can run here before anything is recorded: a mistake leaves no failed run behind."""

from __future__ import annotations

from core.config import TrainConfig
from core.errors import ConfigError


def check_trainable(config: TrainConfig, workspace=None):
    """Check the backbone, its input size and its weights for ``config``, before a run is created.

    ImageNet weights that are on neither the weights folder nor the Keras cache are downloaded here (once, into
    the Keras cache, where the run finds them).

    Args:
        config: The settings.
        workspace: Where a base model (``config.base_model``) is found; default the default workspace.

    Returns:
        The ``core.weights.ResolvedWeights`` the run will be built with.

    Raises:
        ConfigError: an unknown backbone or an input size it does not offer; a cut layer or scaling that does not
            fit a base model.
        RunError / ModelImportError: a base run or model file that cannot be used.
        WeightsError: ImageNet weights asked for that can be neither found nor downloaded.
    """
    from core.backbones import get_backbone
    from core.weights import resolve_weights

    if getattr(config, "base_model", ""):  # a run or a stored model file: it exists, and the cut and scaling fit it
        from core.base_models import resolve_base
        from core.workspace import Workspace

        workspace = workspace or Workspace.open()
        return resolve_base(workspace, config.base_model, config.cut_layer, config.input_scaling,
                            config.image_size).weights
    spec = get_backbone(config.backbone)
    image_size = config.image_size or spec.default_size
    if image_size not in spec.allowed_sizes:
        raise ConfigError(f"image_size={image_size} is not allowed for {spec.display_name}; use one of "
                          f"{', '.join(map(str, spec.allowed_sizes))}.")
    return resolve_weights(spec, image_size, getattr(config, "weights", "imagenet"))  # health jobs: ImageNet
