"""Devices: which ``tf.distribute`` strategy trains, and GPU-only speed-ups.

``auto`` picks MultiWorkerMirroredStrategy when ``TF_CONFIG`` names workers, MirroredStrategy when more than one
GPU is visible and the default strategy otherwise; ``mirrored`` forces MirroredStrategy (over all GPUs, or all CPU
devices when there is no GPU); ``multi-worker`` forces MultiWorkerMirroredStrategy (``core.training.cluster`` reads
``TF_CONFIG``; ``core.training.distributed_fit`` is its training loop, since Keras ``fit`` fails under it).
Mixed precision and XLA are turned on only when a GPU is present: on a CPU they cost time.
For several machines, see the README section "Training on several machines".
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from core.errors import ConfigError

COLLECTIVE_TIMEOUT_ENV = "TRANSFER_STUDIO_COLLECTIVE_TIMEOUT_S"
CLUSTER_WAIT_ENV = "TRANSFER_STUDIO_CLUSTER_WAIT_S"
DEFAULT_COLLECTIVE_TIMEOUT_S = 600  # one step may wait this long for a slower worker (its feature extraction)
DEFAULT_CLUSTER_WAIT_S = 300  # how long the first worker waits for the others to start
HEALTH_CHECK_INTERVAL_S = 10

_MULTI_WORKER: list[tf.distribute.Strategy] = []  # one per process: TensorFlow's cluster can start only once


def gpu_count() -> int:
    return len(tf.config.list_physical_devices("GPU"))


def tf_config_names_workers() -> bool:
    """True when ``TF_CONFIG`` describes a cluster with workers."""
    try:
        return bool(json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {}).get("worker"))
    except (ValueError, AttributeError):
        return False


def choose_strategy(setting: str = "auto") -> tf.distribute.Strategy:
    """The strategy for ``setting`` in ``auto``, ``default``, ``mirrored`` or ``multi-worker``."""
    if setting == "auto":
        if tf_config_names_workers():
            return multi_worker_strategy()
        return tf.distribute.MirroredStrategy() if gpu_count() > 1 else tf.distribute.get_strategy()
    if setting == "default":
        return tf.distribute.get_strategy()
    if setting == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if setting == "multi-worker":
        return multi_worker_strategy()
    raise ConfigError(f"distribution={setting!r} is not one of auto, default, mirrored, multi-worker.")


def multi_worker_strategy() -> tf.distribute.Strategy:
    """This process's MultiWorkerMirroredStrategy, created on first use with bounded waits.

    Create it before any other TensorFlow work in the process (the CLI does). Every collective gives up after
    ``$TRANSFER_STUDIO_COLLECTIVE_TIMEOUT_S`` seconds, the workers wait ``$TRANSFER_STUDIO_CLUSTER_WAIT_S`` for
    one another at the start, and a peer that stops answering aborts the collectives within about half a minute.
    """
    if _MULTI_WORKER:
        return _MULTI_WORKER[0]
    if not tf_config_names_workers():
        raise ConfigError("distribution='multi-worker' needs TF_CONFIG naming the workers, e.g. "
                          '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
                          '"index": 0}}. Set it on every worker (see the README, "Training on several machines").')
    strategy_class = tf.distribute.MultiWorkerMirroredStrategy
    # TensorFlow's own knobs for its peer health check (class attributes; defaults wait forever to start).
    strategy_class._check_health_initial_timeout = _seconds(CLUSTER_WAIT_ENV, DEFAULT_CLUSTER_WAIT_S)
    strategy_class._check_health_interval = HEALTH_CHECK_INTERVAL_S
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=_seconds(COLLECTIVE_TIMEOUT_ENV, DEFAULT_COLLECTIVE_TIMEOUT_S))
    try:
        strategy = strategy_class(communication_options=options)
    except RuntimeError as exc:  # "Timeout waiting for the cluster"
        raise ConfigError(f"The other training workers did not start: {exc}. Start `python -m core train ... "
                          "--distribution multi-worker` on every machine named in TF_CONFIG.") from exc
    _MULTI_WORKER.append(strategy)
    return strategy


def is_multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def describe_strategy(strategy, batch_size: int) -> dict:
    """The strategy, its replicas and workers, and the batch each worker takes of the global one."""
    workers = 1
    if is_multi_worker(strategy):
        workers = strategy.cluster_resolver.cluster_spec().num_tasks("worker") or 1
    name = "MultiWorkerMirroredStrategy" if workers > 1 or is_multi_worker(strategy) else type(strategy).__name__
    return {"strategy": name.replace("_DefaultDistributionStrategy", "default"),
            "replicas": int(strategy.num_replicas_in_sync), "workers": int(workers),
            "global_batch": int(batch_size), "per_worker_batch": int(batch_size // workers),
            "per_replica_batch": int(batch_size // strategy.num_replicas_in_sync)}


def _seconds(env: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(env) or default))
    except ValueError as exc:
        raise ConfigError(f"{env}={os.environ[env]!r} is not a whole number of seconds.") from exc


def configure_precision() -> dict:
    """Mixed float16 and XLA on a GPU, float32 without XLA on a CPU. Returns what was chosen."""
    on_gpu = gpu_count() > 0
    keras.mixed_precision.set_global_policy("mixed_float16" if on_gpu else "float32")
    return {"mixed_precision": on_gpu, "jit_compile": on_gpu, "gpus": gpu_count()}
