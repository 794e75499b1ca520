"""The health check as a background job: embeddings (for the map too) and the report, with progress and Stop.

A health job is a record in the run store of kind ``health`` (``runs.list_runs`` leaves it out of the training
lists); the job manager queues and starts it like a training run, in a ``python -m core worker`` process that calls
:func:`execute_health_job`. The worker writes ``progress.json`` as it embeds the images and ``health.json`` when it
is done, so a page polls the job and finds the report again after a refresh.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from core import runs
from core.errors import StudioError
from core.run_state import RunStatus
from core.workspace import Workspace, atomic_write_json, read_json

REPORT = "health.json"


@dataclass(frozen=True)
class HealthConfig:
    """What a health job checks: a dataset through a backbone at an input size (None: the backbone's own)."""

    dataset_id: str
    backbone: str = "mobilenet_v2"
    image_size: int | None = None
    job_kind: ClassVar[str] = "health"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HealthConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def submit_health_check(manager, config: HealthConfig) -> str:
    """Queue a health job on ``manager`` (a ``core.jobs.JobManager``); returns its id.

    Raises:
        DatasetError: no such dataset. ConfigError: unknown backbone or size. WeightsError: weights missing.
    """
    from core.insight.health import require_weights
    from core.models.backbones import get_backbone

    spec = get_backbone(config.backbone)
    require_weights(spec, int(config.image_size or spec.default_size))
    return manager.submit(config)


def execute_health_job(workspace: Workspace, job_id: str) -> dict:
    """Run health job ``job_id`` in this process; records how it ended and writes ``health.json`` when done."""
    from core.insight.health import check_dataset
    from core.progress import run_job

    config = HealthConfig.from_dict(runs.load_run(workspace, job_id)["config"])

    def work(folder, reporter) -> dict:
        report = check_dataset(workspace, config.dataset_id, config.backbone, image_size=config.image_size,
                               reporter=reporter)
        atomic_write_json(folder / REPORT, report)
        return {"counts": report["counts"]}

    return run_job(workspace, job_id, work, stopped="Stopped while computing the image features; nothing was kept.",
                   interrupted="The server shut down during the health check.")


def latest_health_job(workspace: Workspace, dataset_id: str, records: list[dict] | None = None) -> dict | None:
    """The newest health job record of ``dataset_id`` (any status), or None."""
    records = runs.list_runs(workspace, kind="health") if records is None else records
    return next((r for r in records if r.get("config", {}).get("dataset_id") == dataset_id), None)


def load_report(workspace: Workspace, job_id: str) -> dict | None:
    """The report a finished health job wrote, or None."""
    return read_json(runs.run_dir(workspace, job_id) / REPORT)


def family_report(workspace: Workspace, dataset) -> tuple[dict, str] | None:
    """``(report, dataset id it was made for)``: the newest finished report of ``dataset`` or its nearest ancestor.

    Versions keep their parent's manifest ``file`` names, so a parent's report still points at the right images.
    """
    from core.data.datasets import load_dataset

    records = [r for r in runs.list_runs(workspace, kind="health") if r.get("status") == RunStatus.DONE]
    current, seen = dataset, set()
    while current is not None and current.id not in seen:
        seen.add(current.id)
        record = latest_health_job(workspace, current.id, records)
        report = load_report(workspace, record["run_id"]) if record else None
        if report is not None:
            return report, current.id
        try:
            current = load_dataset(workspace, current.parent_id) if current.parent_id else None
        except StudioError:
            current = None
    return None


def features_ready(workspace: Workspace, dataset, backbone: str = "mobilenet_v2", image_size: int | None = None,
                   weights: str = "imagenet") -> bool:
    """True when the embeddings of ``dataset`` for these settings are cached (the map then draws in seconds)."""
    from core.config import DEFAULT_RESIZE
    from core.models.backbones import get_backbone
    from core.models.features import cached_features, feature_key
    from core.models.weights import resolve_weights, weights_available

    spec = get_backbone(backbone)
    size = int(image_size or spec.default_size)
    if weights == "imagenet" and not weights_available(spec, size):
        return False
    resolved = resolve_weights(spec, size, weights)
    return cached_features(workspace, feature_key(dataset.id, spec.name, size, DEFAULT_RESIZE, resolved.fingerprint)) \
        is not None
