"""The embedding map as a background job: embeddings (cached), projection and flags, off the page's thread.

The job (kind ``embedding-map``, run by ``core.tool_jobs``) calls ``core.insight.projection.build_embedding_map`` and writes
the map's columns to ``map.json`` in its folder (image paths are left out: they are the dataset's folder and the
``file`` column, joined again when the map is read). Progress: ``features`` (images embedded of images, when they
are not cached yet), ``projecting``, ``neighbours``, ``run mistakes``; Stop ends it between two of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from core import runs
from core.errors import ConfigError
from core.tool_jobs import ToolConfig
from core.workspace import Workspace, atomic_write_json, read_json

MAP_FILE = "map.json"
STORED_COLUMNS = ("file", "label", "split", "x", "y", "flagged", "reason", "neighbour_agreement", "source")


@dataclass(frozen=True)
class MapConfig(ToolConfig):
    """A map job: ``dataset_id`` seen through ``backbone`` at ``image_size``, projected by ``method``, with the
    images run ``run_id``'s model gets wrong marked (None: no run)."""

    dataset_id: str
    backbone: str = "mobilenet_v2"
    image_size: int | None = None
    weights: str = "imagenet"
    method: str = "pca"
    run_id: str | None = None
    job_kind: ClassVar[str] = "embedding-map"
    stopped_message: ClassVar[str] = "Stopped before the map was drawn; image features computed so far are " \
        "not kept."

    def __post_init__(self):
        from core.insight.projection import METHODS

        if self.method not in METHODS:
            raise ConfigError(f"method={self.method!r} is not one of {', '.join(METHODS)}.")

    def prepare_job(self, workspace: Workspace) -> list[str]:
        """Check the dataset, backbone, size, weights and run before the job is queued; returns the classes.

        Raises:
            DatasetError: no such dataset. ConfigError: a size the backbone does not offer, or a run of another
            dataset. WeightsError: ImageNet weights that are not on this machine. RunError: an unknown run.
        """
        from core.data.datasets import load_dataset
        from core.models.backbones import get_backbone

        dataset = load_dataset(workspace, self.dataset_id)
        spec = get_backbone(self.backbone)
        size = int(self.image_size or spec.default_size)
        if size not in spec.allowed_sizes:
            raise ConfigError(f"image_size={size} is not allowed for {spec.display_name}; use one of "
                              f"{', '.join(map(str, spec.allowed_sizes))}.")
        if self.weights == "imagenet":
            from core.insight.health import require_weights

            require_weights(spec, size)
        if self.run_id:
            trained_on = runs.load_run(workspace, self.run_id)["config"].get("dataset_id")
            if trained_on != dataset.id:
                raise ConfigError(f"Run {self.run_id} was trained on dataset {trained_on}, not {dataset.id}; pick "
                                  "a run of this dataset to mark the images its model gets wrong.")
        return list(dataset.classes)

    def execute(self, workspace: Workspace, folder: Path, reporter) -> dict:
        """Draw the map into ``map.json``; returns ``{"images", "flagged", "file"}``."""
        from core.data.datasets import load_dataset
        from core.insight.projection import build_embedding_map

        dataset = load_dataset(workspace, self.dataset_id)
        frame = build_embedding_map(workspace, dataset, self.backbone, image_size=self.image_size,
                                    weights=self.weights, method=self.method, run_id=self.run_id, reporter=reporter)
        reporter.stage("saving")
        atomic_write_json(folder / MAP_FILE, {column: frame[column].tolist() for column in STORED_COLUMNS})
        return {"images": int(len(frame)), "flagged": int(frame.flagged.sum()), "file": MAP_FILE}


def load_map(workspace: Workspace, job_id: str, dataset):
    """The map a finished map job drew, as ``build_embedding_map`` returns it (a DataFrame), or None."""
    import pandas as pd

    columns = read_json(runs.run_dir(workspace, job_id) / MAP_FILE)
    if not columns:
        return None
    frame = pd.DataFrame({column: columns[column] for column in STORED_COLUMNS})
    frame["flagged"] = frame["flagged"].astype(bool)
    frame["path"] = [str(dataset.root / file) for file in frame.file]
    return frame
