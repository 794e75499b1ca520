"""*Measure speed* as a background job: a backbone timed on real images of a dataset, off the page's thread.

The job (kind ``speed``, run by ``core.tool_jobs``) calls ``core.models.speed.measure_speed``, which records the figure in
``speeds.json`` where every page reads speeds; the job's result repeats it. Progress: ``preparing`` (building the
model, converting it when the run would use LiteRT), then ``timing`` (batches timed of batches).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from core.errors import ConfigError
from core.tool_jobs import ToolConfig
from core.workspace import Workspace

RUNTIMES = (None, "keras")


@dataclass(frozen=True)
class SpeedConfig(ToolConfig):
    """A speed job: time ``backbone`` at ``image_size`` on images of ``dataset_id``.

    ``runtime`` None times the runtime a run's feature pass would use (LiteRT or Keras), ``keras`` times Keras
    (what training steps run on).
    """

    dataset_id: str
    backbone: str = "mobilenet_v2"
    image_size: int = 224
    weights: str = "imagenet"
    runtime: str | None = None
    job_kind: ClassVar[str] = "speed"
    stopped_message: ClassVar[str] = "Stopped before the timing finished; no speed was recorded."

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime={self.runtime!r} is not one of: the run's own (None), 'keras'.")

    def prepare_job(self, workspace: Workspace) -> list[str]:
        """Check the dataset, backbone and size before the job is queued; returns the dataset's classes.

        Raises:
            DatasetError: no such dataset. ConfigError: unknown backbone or a size it does not offer.
        """
        from core.data.datasets import load_dataset
        from core.models.backbones import get_backbone

        dataset = load_dataset(workspace, self.dataset_id)
        spec = get_backbone(self.backbone)
        if self.image_size not in spec.allowed_sizes:
            raise ConfigError(f"image_size={self.image_size} is not allowed for {spec.display_name}; use one of "
                              f"{', '.join(map(str, spec.allowed_sizes))}.")
        return list(dataset.classes)

    def execute(self, workspace: Workspace, folder: Path, reporter) -> dict:
        """Time it; returns ``{"images_per_s", "runtime", "measured_on"}`` as recorded in ``speeds.json``."""
        from core.data.datasets import load_dataset
        from core.models.speed import latest_figure, measure_speed

        dataset = load_dataset(workspace, self.dataset_id)
        speed = measure_speed(workspace, self.backbone, self.image_size, dataset=dataset, weights=self.weights,
                              runtime=self.runtime, reporter=reporter)
        figure = latest_figure(workspace, self.backbone, self.image_size)
        return {"images_per_s": speed, "runtime": figure.runtime if figure else self.runtime or "keras",
                "measured_on": figure.measured_on if figure else ""}
