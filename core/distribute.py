"""Devices: which ``tf.distribute`` strategy trains, and GPU-only speed-ups.

``auto`` picks MirroredStrategy when more than one GPU is visible and the default strategy
otherwise; ``mirrored`` forces it (over all GPUs, or all CPU devices when there is no GPU).
Mixed precision and XLA are turned on only when a GPU is present: on a CPU they cost time.
For several machines, run the CLI on each worker with ``TF_CONFIG`` set; see the README.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from core.errors import ConfigError


def gpu_count() -> int:
    return len(tf.config.list_physical_devices("GPU"))


def choose_strategy(setting: str = "auto") -> tf.distribute.Strategy:
    """The strategy for ``setting`` in ``auto``, ``default``, ``mirrored`` or ``multi-worker``."""
    if setting == "auto":
        if "TF_CONFIG" in os.environ and json.loads(os.environ["TF_CONFIG"]).get("cluster", {}).get("worker"):
            return tf.distribute.MultiWorkerMirroredStrategy()
        return tf.distribute.MirroredStrategy() if gpu_count() > 1 else tf.distribute.get_strategy()
    if setting == "default":
        return tf.distribute.get_strategy()
    if setting == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if setting == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"distribution={setting!r} is not one of auto, default, mirrored, multi-worker.")


def configure_precision() -> dict:
    """Mixed float16 and XLA on a GPU, float32 without XLA on a CPU. Returns what was chosen."""
    on_gpu = gpu_count() > 0
    keras.mixed_precision.set_global_policy("mixed_float16" if on_gpu else "float32")
    return {"mixed_precision": on_gpu, "jit_compile": on_gpu, "gpus": gpu_count()}
