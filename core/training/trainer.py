"""Training: the three strategies, run inside one process, recorded in the run store.

``execute_run(workspace, run_id)`` trains a run created by ``core.runs.create_run`` (the job
worker calls it); ``train_model(config, workspace)`` creates and trains one in the calling process
(the CLI). Heads on frozen features are chosen by cross-validation on cached embeddings
(``core.models.heads``); image phases keep the best weights seen on the selection images across phases
(``core.data.roles``), and the headline accuracy of the saved model comes from images that chose nothing.
"""

from __future__ import annotations

import os
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor, wait

import keras
import tensorflow as tf

from core import runs
from core.config import TrainConfig
from core.errors import ConfigError, StudioError, WorkspaceError
from core.processes import Interrupted, process_start_time
from core.progress import RunReporter, StopRequested
from core.run_state import RESULT_STATUSES, RunStatus
from core.workspace import WORKSPACE_ENV, Workspace

STOPPED_UNMEASURED = ("The best model so far was kept; Stop came before its accuracy was measured. Evaluate it on "
                      "the Evaluate page.")


def train_model(config: TrainConfig, workspace: Workspace, *, on_epoch=None) -> dict:
    """Create a run for ``config`` and train it here; returns the final run record."""
    from core.data.datasets import load_dataset

    dataset = load_dataset(workspace, config.dataset_id)
    run_id = runs.create_run(workspace, config, classes=dataset.classes, status=RunStatus.RUNNING, pid=os.getpid(),
                             pid_started=process_start_time(os.getpid()))
    return execute_run(workspace, run_id, on_epoch=on_epoch)


def execute_run(workspace: Workspace, run_id: str, *, on_epoch=None) -> dict:
    """Train run ``run_id`` in this process and record how it ended (done, stopped, failed, interrupted)."""
    folder = runs.run_dir(workspace, run_id)
    record = runs.load_run(workspace, run_id)
    config = TrainConfig.from_dict(record["config"])
    reporter = RunReporter(folder, on_epoch=on_epoch)

    runs.update_run(workspace, run_id, status=RunStatus.RUNNING, pid=os.getpid(),
                    pid_started=process_start_time(os.getpid()), started_at=time.time(), error=None)
    timings: dict = {}
    started = time.perf_counter()
    final: dict = {}
    try:
        final = _train(workspace, run_id, config, reporter, timings)
        not_measured = final.pop("not_measured", False)
        stopped = reporter.progress.get("stopped_by_user") or not_measured
        final["status"] = RunStatus.STOPPED if stopped else RunStatus.DONE
        final["error"] = STOPPED_UNMEASURED if not_measured else None
    except StopRequested:
        final = {"status": RunStatus.STOPPED, "error": "Stopped before the first epoch ended; no model was saved."}
    except Interrupted:
        final = {"status": RunStatus.INTERRUPTED, "error": "The server shut down while this run was training."}
    except StudioError as exc:
        final = {"status": RunStatus.FAILED, "error": str(exc)}
    except (MemoryError, tf.errors.ResourceExhaustedError) as exc:
        final = {"status": RunStatus.FAILED, "error": "Out of memory while training. Lower the batch size or the "
                 "image size, or pick a smaller backbone.", "error_details": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # a bug or an environment fault: record it with its traceback
        final = {"status": RunStatus.FAILED, "error": f"{type(exc).__name__}: {exc}",
                 "error_details": traceback.format_exc()}
    if final["status"] == RunStatus.STOPPED:  # where: the stage, and in a phase the epoch and batch
        final["stopped_at"] = reporter.progress.get("stopped_at") or {"stage": reporter.progress.get("stage")}
    timings["total_s"] = round(time.perf_counter() - started, 3)
    reporter.stage("finished")
    return runs.update_run(workspace, run_id, finished_at=time.time(), timings=timings, **final)


def _train(workspace: Workspace, run_id: str, config: TrainConfig, reporter: RunReporter, timings: dict) -> dict:
    from core.data.datasets import load_dataset
    from core.data.images import DEFAULT_MAX_SIDE
    from core.data.roles import data_roles
    from core.models.classifier import build_classifier
    from core.models.plan import plan_run
    from core.training.cluster import cluster_task
    from core.training.continuation import starting_point
    from core.training.distribute import (
        choose_strategy,
        configure_precision,
        describe_strategy,
        is_multi_worker,
    )
    from core.training.phases import RunParts

    reporter.stage("loading")
    dataset = load_dataset(workspace, config.dataset_id)
    if "val" not in dataset.splits:
        raise ConfigError(f"Dataset {dataset.id} has no validation split; ingest it again with a validation fraction.")
    start = starting_point(workspace, run_id)  # None unless this run continues an earlier one
    plan = plan_run(config, workspace, dataset=dataset, start=start)  # the facts of the run, worked out once
    start, base, spec, image_size, weights = plan.start, plan.base, plan.spec, plan.image_size, plan.weights
    if base is not None:
        runs.update_run(workspace, run_id, base=base.record)
    runs.update_run(workspace, run_id, plan=plan.describe())
    devices = configure_precision()
    roles = data_roles(dataset, needs_selection=config.needs_selection, seed=config.seed)
    runs.update_run(workspace, run_id, weights=weights.description, weights_fingerprint=weights.fingerprint,
                    image_size=image_size, devices=devices, roles=roles.describe(),
                    max_side=dataset.summary.get("max_side") or DEFAULT_MAX_SIDE)
    keras.utils.set_random_seed(config.seed)
    strategy = choose_strategy(config.distribution)
    if is_multi_worker(strategy):  # every Stop decision is taken by all workers at the same point
        from core.training.distributed_fit import stop_agreement

        reporter.share_stop(stop_agreement(strategy))
    runs.update_run(workspace, run_id, distribution=describe_strategy(strategy, config.batch_size),
                    **({"cluster": task.describe()} if (task := cluster_task()) and is_multi_worker(strategy) else {}))
    build_started = time.perf_counter()

    def build():
        with strategy.scope():
            head = {"dropout": config.dropout, "hidden_units": config.hidden_units, "seed": config.seed}
            return start.load_model(dataset.classes) if start else base.build_classifier(
                num_classes=len(dataset.classes), **head) if base else build_classifier(
                spec, image_size=image_size, num_classes=len(dataset.classes), weights=weights, **head)

    ahead = _build_ahead(build, plan, strategy, start, base, timings)
    built = ahead if ahead is not None else build()
    timings["build_s"] = round(time.perf_counter() - build_started, 3)
    parts = RunParts(workspace=workspace, run_id=run_id, config=config, reporter=reporter, dataset=dataset,
                     spec=spec, image_size=image_size, weights=weights, built=built, strategy=strategy,
                     jit_compile=devices["jit_compile"], timings=timings, roles=roles, plan=plan)
    try:
        return _train_parts(parts, ahead)
    finally:
        if ahead is not None:
            wait([ahead])  # a run that ended early still lets the build finish before the process does


def _build_ahead(build, plan, strategy, start, base, timings: dict) -> Future | None:
    """The model built in a background thread (a ``Future`` of it) when the run's first steps do not need it, else
    None (built right away); the thread's own seconds go to ``timings["build_ahead_s"]``.

    A head on embeddings needs the Keras model only to be put on it: LiteRT computes the embeddings (or they are
    cached) and the head is chosen by cross-validation in NumPy, so building the backbone (0.7 s for MobileNetV2,
    on one core) overlaps them. Only a fresh build in one process (no continued run or saved base, one
    replica): Keras keeps one set of layer names, so nothing else makes layers meanwhile.
    """
    if start is not None or base is not None or not plan.uses_features or plan.config.head == "keras" \
            or strategy is not tf.distribute.get_strategy():
        return None

    def timed_build():
        started = time.perf_counter()
        try:
            return build()
        finally:
            timings["build_ahead_s"] = round(time.perf_counter() - started, 3)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="build-model")
    try:
        return pool.submit(timed_build)
    finally:
        pool.shutdown(wait=False)  # its one thread ends when the build does


def _train_parts(parts, ahead) -> dict:
    from core.training.phases import fit_head_phase, fit_image_phase, headline_of

    config, reporter, timings, workspace, run_id = parts.config, parts.reporter, parts.timings, parts.workspace, \
        parts.run_id
    train_started = time.perf_counter()
    reporter.plan(parts.work_plan())
    if config.strategy == "from-scratch":
        best = fit_image_phase(parts, phase=1, trainable="all", epochs=config.epochs,
                               learning_rate=config.effective_learning_rate, augment=config.augment)
    elif config.augment:
        best = fit_image_phase(parts, phase=1, trainable="frozen", epochs=config.epochs,
                               learning_rate=config.effective_learning_rate, augment=True)
    else:
        best = fit_head_phase(parts)
    reporter.sync_stop()  # across workers: a Stop during the head search is agreed here (else a look, no change)
    fine_tune = config.strategy == "fine-tune" and config.fine_tune_epochs > 0
    if fine_tune and (reporter.progress.get("stopped_by_user") or reporter.stop_requested()):
        # Stop between the phases: keep phase 1's best model (the model may hold the head refit without the
        # holdout, which fine-tuning would have started from) and never build the fine-tuning step.
        reporter.mark_stopped()
        if best is not None and best.weights is not None:
            parts.model.set_weights(best.weights)
    elif fine_tune:
        best = fit_image_phase(parts, phase=2, trainable="top", top_layers=parts.fine_tune_layers(),
                               epochs=config.fine_tune_epochs, learning_rate=config.fine_tune_learning_rate,
                               augment=True, best=best)
    # Seconds waiting for a background build count as building (so build, features and training add up to the
    # time they took together); the build's own seconds are kept as ``build_ahead_s``.
    timings["train_s"] = round(time.perf_counter() - train_started - timings.get("features_s", 0.0)
                               - parts.build_waited_s, 3)
    if ahead is not None:
        timings["build_s"] = round(timings["build_s"] + parts.build_waited_s, 3)
    reporter.stage("saving")
    path = save_model(parts.model, runs.model_path(workspace, run_id))
    reporter.stage("evaluating")
    reporter.sync_stop()  # across workers: all measure the saved model, or none (its predict pass is collective)
    headline = headline_of(parts)
    history = reporter.history
    return {
        "best_val_accuracy": headline.pop("val_accuracy", None),
        "val_loss": headline.pop("val_loss", None),
        "headline": headline["headline"],
        "selection_score": list(best.score) if best and best.score else None,
        "cv_estimate": headline.get("cv_estimate"),
        "epochs_run": len(history),
        "best_epoch": best.epoch if best else None,
        "not_measured": headline.get("not_measured", False),
        "model_path": str(path),
        "image_size": parts.image_size,
    }


def train_continued(workspace, source_run: str, dataset_id: str, *, on_epoch=None, **settings) -> dict:
    """Create a run continuing ``source_run`` on ``dataset_id`` and train it here; returns the final record."""
    from core.data.datasets import load_dataset
    from core.training.continuation import continue_config

    config, fields = continue_config(workspace, source_run, dataset_id, **settings)
    classes = load_dataset(workspace, config.dataset_id).classes
    run_id = runs.create_run(workspace, config, classes=classes, status=RunStatus.RUNNING, pid=os.getpid(),
                             pid_started=process_start_time(os.getpid()), **fields)
    return execute_run(workspace, run_id, on_epoch=on_epoch)


def train_as_worker(workspace: Workspace, record: dict, index: int) -> int:
    """Train the chief's run ``record`` as worker ``index`` of the configured workers, leaving nothing behind."""
    from core.training.cluster import (
        WORKERS_ENV,
        cluster_task,
        configured_workers,
        tf_config,
        worker_workspace,
    )
    from core.training.distribute import multi_worker_strategy

    workers = configured_workers()
    if not 0 < index < len(workers):
        raise ConfigError(f"--as-worker {index} is not one of the other workers 1..{len(workers) - 1} listed in "
                          f"{WORKERS_ENV}={','.join(workers) or '(unset)'}.")
    os.environ["TF_CONFIG"] = tf_config(workers, index)
    task = cluster_task()
    multi_worker_strategy()
    config = TrainConfig.from_dict(record["config"])
    with worker_workspace(workspace, config.dataset_id, task) as here:
        result = train_model(config, here)
    print(f"worker {index} of {len(workers)} for run {record['run_id']}: {result['status']} "
          f"{result.get('error') or ''}".strip(), flush=True)
    return 0 if result["status"] in RESULT_STATUSES else 1


def save_model(model, path):
    """Save ``model`` to ``path`` atomically; a full disk or a read-only folder gives a WorkspaceError."""
    staging = path.with_name(".model.tmp.keras")
    try:
        model.save(staging)
        os.replace(staging, path)
    except OSError as exc:
        staging.unlink(missing_ok=True)
        raise WorkspaceError(
            f"Could not save the model to {path}: {exc.strerror or exc}. Free some disk space or make the "
            f"workspace folder writable ({WORKSPACE_ENV}), then train again."
        ) from exc
    return path
