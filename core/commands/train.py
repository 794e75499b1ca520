"""``python -m core train DATASET ...``: train in this process, one line per epoch."""

from __future__ import annotations

import json
import time
from pathlib import Path

from core.config import SETTINGS, Setting, TrainConfig
from core.errors import ConfigError, StudioError
from core.run_state import RunStatus
from core.workspace import Workspace

# TrainConfig fields that ``--base-model`` resolves (a model file is checked and stored first), not taken as given.
BASE_FIELDS = ("base_model", "cut_layer", "input_scaling")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a classifier on a dataset id, zip or folder",
                                   description="Train a classifier. Each option is a TrainConfig field; its help, "
                                               "choices, range and default are declared there (core/config.py).")
    parser.add_argument("dataset", help="dataset id, or a zip / folder to ingest first")
    for setting in SETTINGS.values():
        if setting.flag is not None:
            add_setting(parser, setting)
    parser.add_argument("--continue", dest="continue_run", metavar="RUN_ID", default=None,
                        help="start from this finished run's model (trained here or imported, same classes); "
                             "its backbone, image size and resize mode are kept")
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.set_defaults(run=run)


def add_setting(parser, setting: Setting) -> None:
    """``setting``'s option: its flag, type, choices and default, and its help with the default."""
    shown = {"help": setting.describe().replace("%", "%%"), "dest": setting.name, "default": setting.default}
    if setting.kind is bool:
        parser.add_argument(setting.flag, action="store_true", **shown)
        return
    parser.add_argument(setting.flag, type=setting.kind, choices=setting.choices, metavar=setting.metavar, **shown)


def run(args) -> int:
    from core.data.datasets import ingest, load_dataset
    from core.models.preflight import check_trainable

    workspace = Workspace.open(args.workspace)
    started = time.perf_counter()
    ingest_s = 0.0
    dataset_id = args.dataset
    task = _cluster_task(args)
    if task and Path(args.dataset).exists():
        raise ConfigError(f"{args.dataset} is a file or folder; across workers, give a dataset id so that every "
                          "worker reads the same dataset (ingest it first with `python -m core ingest`).")
    if Path(args.dataset).exists():
        dataset_id = ingest(Path(args.dataset), workspace).id
        ingest_s = time.perf_counter() - started
    else:
        load_dataset(workspace, dataset_id)  # a wrong id fails fast, before TensorFlow loads
    config = _config(workspace, args, dataset_id)
    if task:
        return _run_as_worker(args, config, workspace, task, started)
    if args.continue_run:
        from core.training.continuation import continued_settings
        from core.training.trainer import train_continued

        record = train_continued(workspace, args.continue_run, dataset_id, on_epoch=_print_epoch,
                                 **continued_settings(config))
    else:
        check_trainable(config, workspace)  # a mistyped backbone or missing weights must not leave a failed run behind
        from core.training.trainer import train_model

        record = train_model(config, workspace, on_epoch=_print_epoch)
    timings = {"ingest_s": round(ingest_s, 3), "build_s": record["timings"].get("build_s", 0.0),
               "features_s": record["timings"].get("features_s", 0.0),
               "train_s": record["timings"].get("train_s", 0.0),
               "features_runtime": record["timings"].get("features_runtime"),
               "conversion_s": record["timings"].get("conversion_s", 0.0),
               "total_s": round(time.perf_counter() - started, 3)}
    if record["status"] == RunStatus.FAILED:
        raise StudioError(record["error"])
    _print_result(args, record, timings)
    return 0


def _config(workspace, args, dataset_id: str) -> TrainConfig:
    """The run's TrainConfig: each option as given, those of ``--base-model`` resolved from its base."""
    based = _base_settings(workspace, args)
    given = {name: getattr(args, name) for name, setting in SETTINGS.items()
             if setting.flag is not None and name not in BASE_FIELDS}
    return TrainConfig(dataset_id=dataset_id, **{**given, **based})


def _print_result(args, record: dict, timings: dict) -> None:
    """The run's result: one JSON object with ``--json``, else a line or three for people."""
    before = ((record.get("continued_from") or {}).get("before") or {}).get("accuracy")
    if args.json:
        print(json.dumps({"run_id": record["run_id"], "status": record["status"],
                          "val_accuracy": record.get("best_val_accuracy"), "val_loss": record.get("val_loss"),
                          "epochs_run": record.get("epochs_run"), "timings": timings,
                          "model_path": record.get("model_path"), "weights": record.get("weights"),
                          "headline": record.get("headline"), "cv_estimate": record.get("cv_estimate"),
                          "roles": record.get("roles"), "head_selection": record.get("head_selection"),
                          **({"val_accuracy_before": before} if args.continue_run else {}),
                          **({"base": record.get("base")} if args.base_model else {})}))
    else:
        from core.data.roles import format_headline

        if args.continue_run:
            print(f"continued from {args.continue_run}: val_accuracy before={before}")
        if record.get("base"):
            print(f"base: {record['base']['description']}")
        print(f"run {record['run_id']} {record['status']}: accuracy {format_headline(record.get('headline'))} "
              f"model={record.get('model_path')} ({timings['total_s']:.1f} s)")


def _base_settings(args_workspace, args) -> dict:
    """TrainConfig fields for ``--base-model`` (a model file is checked and stored first); empty without it."""
    if not args.base_model:
        if args.cut_layer or args.input_scaling != SETTINGS["input_scaling"].default:
            raise ConfigError("--cut-layer and --input-scaling go with --base-model RUN_ID_OR_PATH.")
        return {}
    if args.continue_run:
        raise ConfigError("--continue starts from that run's whole model; --base-model cannot go with it.")
    from core.models.base_models import base_settings

    settings = base_settings(args_workspace, args.base_model, args.cut_layer, args.input_scaling, args.image_size)
    args.image_size = settings.pop("image_size")
    return settings


def _cluster_task(args):
    """This process's task when it trains across workers (``multi-worker``, or ``auto`` with TF_CONFIG)."""
    from core.training.cluster import cluster_task
    from core.training.distribute import tf_config_names_workers

    if args.distribution == "multi-worker" or (args.distribution == "auto" and tf_config_names_workers()):
        task = cluster_task()
        if task is None:
            raise ConfigError("--distribution multi-worker needs TF_CONFIG naming the workers; see the README, "
                              "\"Training on several machines\".")
        if args.continue_run:
            raise ConfigError("--continue cannot be combined with training across workers; train on one machine.")
        return task
    return None


def _run_as_worker(args, config, workspace, task, started) -> int:
    """Train ``config`` as one worker of a cluster: the chief records the run, the others leave nothing."""
    from core.models.preflight import check_trainable
    from core.training.cluster import worker_workspace
    from core.training.distribute import multi_worker_strategy
    from core.training.trainer import train_model

    check_trainable(config, workspace)
    multi_worker_strategy()  # before any other TensorFlow work in this process
    with worker_workspace(workspace, config.dataset_id, task) as here:
        record = train_model(config, here, on_epoch=_print_epoch if task.is_chief else None)
    if record["status"] == RunStatus.FAILED:
        raise StudioError(record["error"])
    if not task.is_chief:
        print(f"worker {task.index} of {len(task.workers)} {record['status']} "
              f"({time.perf_counter() - started:.1f} s); the chief saved the model", flush=True)
        return 0
    if args.json:
        print(json.dumps({"run_id": record["run_id"], "status": record["status"],
                          "val_accuracy": record.get("best_val_accuracy"), "val_loss": record.get("val_loss"),
                          "epochs_run": record.get("epochs_run"), "model_path": record.get("model_path"),
                          "distribution": record.get("distribution"), "cluster": record.get("cluster"),
                          "timings": record.get("timings"), "headline": record.get("headline")}))
    else:
        print(f"run {record['run_id']} {record['status']} on {len(task.workers)} workers: val_accuracy "
              f"{record.get('best_val_accuracy')} model={record.get('model_path')}", flush=True)
    return 0


def _print_epoch(record: dict) -> None:
    metrics = " ".join(f"{key}={record[key]:.4f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                       if record.get(key) is not None)
    if record.get("head"):
        metrics += f" head={record['head']}"
    print(f"epoch {record['epoch']} phase {record['phase']} {metrics} time={record['epoch_time']:.2f}s",
          flush=True)
