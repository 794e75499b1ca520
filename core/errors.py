"""The project's error hierarchy.

Every message says what was received, what was expected and how to fix it. Pages catch
``StudioError`` and show it; the CLI prints it as one ``error:`` line and exits 2.
"""


class StudioError(Exception):
    """Base class of every error a user can cause and fix."""


class DatasetError(StudioError, ValueError):
    """A dataset (zip, folder, CSV, image) that cannot be used as it is."""


class ConfigError(StudioError, ValueError):
    """A setting outside what the engine accepts."""


class WeightsError(StudioError):
    """Pretrained weights that cannot be found or loaded."""


class RunError(StudioError):
    """A run that does not exist or is in the wrong state for the request."""


class ExportError(StudioError):
    """A model that cannot be exported or an export that does not reload."""


class WorkspaceError(StudioError, OSError):
    """The workspace cannot be written (full disk, no permission)."""


class SpaceError(StudioError):
    """A space of a shared server that does not exist or cannot be changed now."""


class LimitError(SpaceError):
    """A space's limit (disk, datasets, runs at once) is reached; the message says what to delete."""


class ModelImportError(StudioError, ValueError):
    """A model file from elsewhere (e.g. a Teachable Machine export) that cannot be imported."""
