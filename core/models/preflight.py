"""Checks a training config can run here before anything is recorded: a mistake leaves no failed run behind."""

from __future__ import annotations

from core.config import TrainConfig


def check_trainable(config, workspace=None):
    """Check the backbone, its input size and its weights for ``config``, before a run is created.

    ImageNet weights that are on neither the weights folder nor the Keras cache are downloaded here (once, into
    the Keras cache, where the run finds them).

    Args:
        config: The settings: a ``TrainConfig``, or a health job's config (a backbone and a size, ImageNet weights).
        workspace: Where the dataset and a base model (``config.base_model``) are; default the default workspace.

    Returns:
        For a ``TrainConfig`` the run's ``core.models.plan.RunPlan``; else the ``core.models.weights.ResolvedWeights`` to use.

    Raises:
        ConfigError: an unknown backbone or an input size it does not offer; a cut layer or scaling that does not
            fit a base model.
        RunError / ModelImportError: a base run or model file that cannot be used.
        WeightsError: ImageNet weights asked for that can be neither found nor downloaded.
    """
    from core.models.backbones import get_backbone
    from core.models.plan import checked_size, plan_run
    from core.models.weights import resolve_weights
    from core.workspace import Workspace

    if isinstance(config, TrainConfig):
        return plan_run(config, workspace or Workspace.open())
    spec = get_backbone(config.backbone)
    return resolve_weights(spec, checked_size(spec, config.image_size), "imagenet")
