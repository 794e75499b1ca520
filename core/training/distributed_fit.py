"""Training across worker processes: a small custom loop for ``MultiWorkerMirroredStrategy``.

Keras ``fit`` fails under that strategy in Keras 3.15 / TensorFlow 2.21 ("Attempt to convert a value
(PerReplica:{...}) to a Tensor", keras-team/keras#20585), so image and Keras-head phases across workers run this
loop instead: each worker reads its own shard of the files (explicit sharding in
``distribute_datasets_from_function``), ``strategy.run`` runs a ``GradientTape`` step whose loss is
``tf.nn.compute_average_loss`` over the global batch, and ``optimizer.apply_gradients`` sums the gradients of
every replica. The run's own callbacks (progress, Stop, best weights, early stopping) are driven as ``fit`` drives
them. Every decision is taken on figures summed over all workers, so every worker takes the same one: the chief's
Stop flag rides in the same all-reduce as each step's figures, so every worker leaves the loop after that same step
and marks the run stopped, and the validation figures each worker sees are the same. Outside the loop, Stop is
agreed by ``stop_agreement`` at points every worker passes together (``RunReporter.sync_stop``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from core.errors import ConfigError, StudioError
from core.progress import Best

LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                      tf.errors.AbortedError, tf.errors.InternalError)


class WorkerLost(StudioError):
    """Another worker of a multi-worker run stopped answering."""


@dataclass(frozen=True)
class Source:
    """Training or validation examples: ``make(indices, batch_size)`` builds the dataset of the chosen ones."""

    size: int
    make: Callable[[np.ndarray, int], tf.data.Dataset]


def image_source(parts, split: str, index, *, training: bool, augment: bool = False) -> Source:
    """Images of ``split`` at ``index`` (shuffled and possibly augmented when ``training``)."""
    from core.models.pipeline import build_augmentation, make_image_dataset

    index = np.asarray(index)
    config = parts.config

    def make(chosen, batch_size):
        rows = index[chosen]
        return make_image_dataset(parts.paths(split, rows), parts.labels(split, rows), image_size=parts.image_size,
                                  batch_size=batch_size, resize=config.resize, shuffle=training, seed=config.seed,
                                  augment=build_augmentation(config.seed) if augment else None)

    return Source(size=len(index), make=make)


def array_source(x, y, *, training: bool, seed: int = 0) -> Source:
    """Embeddings ``x`` with labels ``y`` (the Keras head on cached features)."""
    x, y = np.asarray(x), np.asarray(y)

    def make(chosen, batch_size):
        dataset = tf.data.Dataset.from_tensor_slices((x[chosen], y[chosen]))
        if training:
            dataset = dataset.shuffle(len(chosen), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(batch_size)

    return Source(size=len(y), make=make)


def fit_across_workers(parts, model, *, train: Source, val: Source, phase: int, steps: int, epochs: int,
                       initial_epoch: int, best: Best | None, validation_steps: int) -> Best:
    """Train ``model`` (compiled by ``parts.compile``) like ``fit`` would, on every worker at once.

    Returns:
        The best weights seen (restored into the full model at the end, as ``BestWeights`` does under ``fit``).

    Raises:
        WorkerLost: a worker died or stopped answering (the collectives time out or are aborted).
    """
    try:
        return _fit(parts, model, train, val, phase=phase, steps=steps, epochs=epochs, initial_epoch=initial_epoch,
                    best=best, validation_steps=validation_steps)
    except LOST_WORKER_ERRORS as exc:
        raise _worker_lost(parts.strategy, exc) from exc


def _worker_lost(strategy, exc) -> WorkerLost:
    return WorkerLost(f"A training worker stopped answering ({_lost_peer(strategy, exc)}), so the run across "
                      f"{_worker_count(strategy)} workers failed. Check that every worker machine is up and reachable, "
                      "then train again.")


def _lost_peer(strategy, exc) -> str:
    """Which worker TensorFlow's error names (``/job:worker/replica:0/task:N``), with its address."""
    import re

    found = re.search(r"/job:worker/replica:\d+/task:(\d+)", str(exc))
    if not found:
        return type(exc).__name__
    index = int(found.group(1))
    addresses = strategy.cluster_resolver.cluster_spec().as_dict().get("worker", [])
    return f"worker {index}" + (f" at {addresses[index]}" if index < len(addresses) else "")


def _fit(parts, model, train, val, *, phase, steps, epochs, initial_epoch, best, validation_steps) -> Best:
    strategy = parts.strategy
    global_batch = _check_batch(parts.config.batch_size, strategy)
    callbacks, keeper = parts.callbacks(phase, steps, epochs, best, validation_steps)
    callbacks = keras.callbacks.CallbackList(
        [c for c in callbacks if not isinstance(c, keras.callbacks.TensorBoard)], model=model)
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    _agree_weights(strategy, parts.model)
    iterator = iter(strategy.distribute_datasets_from_function(
        lambda context: train.make(_shard(train.size, context), context.get_per_replica_batch_size(global_batch))
        .repeat()))
    train_step = _train_step(strategy, model, global_batch, parts.class_weight())
    reporter = parts.reporter
    model.stop_training = False
    callbacks.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callbacks.on_epoch_begin(epoch)
        totals = np.zeros(3)
        for batch in range(steps):
            callbacks.on_train_batch_begin(batch)
            figures = train_step(iterator, tf.constant(float(reporter.local_stop_requested())))
            totals += figures[:3]
            if figures[3] > 0:  # some worker's Stop flag rode in this step: every worker stops after it
                reporter.agree_stop(phase=phase, epoch=epoch + 1, batch=batch + 1, of=steps)
            callbacks.on_train_batch_end(batch, {"loss": totals[0] / max(totals[2], 1.0)})
            if model.stop_training:
                break
        logs, stop = _epoch_logs(strategy, model, val, global_batch, totals, bool(model.stop_training))
        model.stop_training = stop
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end()
    if keeper.best.weights is None and reporter.progress.get("stopped_by_user"):
        from core.progress import StopRequested

        raise StopRequested()  # stopped in the first epoch of the run: no scored model to keep (as under fit)
    return keeper.best


def _check_batch(batch_size: int, strategy) -> int:
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(f"batch_size={batch_size} does not split evenly over {replicas} workers' replicas; use a "
                          f"multiple of {replicas} (each worker takes batch_size / {replicas} images of each step).")
    return int(batch_size)


def _shard(size: int, context: tf.distribute.InputContext) -> np.ndarray:
    """This worker's share of ``size`` examples: every n-th one, starting at its own number."""
    return np.arange(size)[context.input_pipeline_id::context.num_input_pipelines]


def _worker_count(strategy) -> int:
    return strategy.cluster_resolver.cluster_spec().num_tasks("worker") or 1


def _local_replicas(strategy) -> int:
    return max(1, strategy.num_replicas_in_sync // _worker_count(strategy))


def _train_step(strategy, model, global_batch: int, class_weight: dict | None):
    optimizer = model.optimizer
    weights = None if not class_weight else tf.constant(
        [class_weight[i] for i in range(len(class_weight))], tf.float32)

    def step(images, labels, stop):
        labels = tf.cast(labels, tf.int32)
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            weighted = per_example if weights is None else per_example * tf.gather(weights, labels)
            loss = tf.nn.compute_average_loss(weighted, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1, output_type=tf.int32), labels),
                                        tf.float32))
        count = tf.cast(tf.size(labels), tf.float32)
        return tf.stack([tf.reduce_sum(per_example), correct, count, stop])

    @tf.function
    def run(iterator, stop):
        images, labels = next(iterator)
        figures = strategy.run(step, args=(images, labels, stop))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, figures, axis=None)

    return lambda iterator, stop: np.asarray(run(iterator, stop), dtype=np.float64)


def _epoch_logs(strategy, model, val: Source, global_batch: int, totals, stop: bool) -> tuple[dict, bool]:
    """The epoch's figures summed over every worker (each validates its own share), and whether any stops."""
    local = np.zeros(3) if stop else _validate(strategy, model, val, global_batch)  # a cut epoch scores nothing
    summed = sum_over_workers(strategy, np.concatenate([local, [float(stop)]]))
    logs = {"loss": totals[0] / max(totals[2], 1.0), "accuracy": totals[1] / max(totals[2], 1.0)}
    if summed[2]:
        logs.update(val_loss=summed[0] / summed[2], val_accuracy=summed[1] / summed[2])
    return logs, bool(summed[3] > 0)


def _validate(strategy, model, val: Source, global_batch: int) -> np.ndarray:
    """Loss sum, correct count and image count of this worker's share of the validation images."""
    task = strategy.cluster_resolver.task_id or 0
    chosen = np.arange(val.size)[task::_worker_count(strategy)]
    if not len(chosen):
        return np.zeros(3)
    forward = tf.function(lambda images: model(images, training=False))
    figures = np.zeros(3)
    for images, labels in val.make(chosen, max(1, global_batch // _worker_count(strategy))):
        probabilities = np.clip(np.asarray(forward(images), dtype=np.float64), 1e-12, 1.0)
        labels = np.asarray(labels)
        figures += [-np.log(probabilities[np.arange(len(labels)), labels]).sum(),
                    float((probabilities.argmax(axis=1) == labels).sum()), float(len(labels))]
    return figures


def sum_over_workers(strategy, values) -> np.ndarray:
    """``values`` (a 1-D float array on each worker) summed over every worker; the same result on each."""
    values = np.asarray(values, dtype=np.float32)
    result = _adder(strategy, len(values))(tf.constant(values))
    return np.asarray(strategy.experimental_local_results(result)[0], dtype=np.float64) / _local_replicas(strategy)


_ADDERS: dict = {}


def _adder(strategy, length: int):
    """One traced all-reduce per strategy and length, reused: a Stop agreed at every batch must not retrace."""
    key = (id(strategy), length)
    if key not in _ADDERS:
        @tf.function(input_signature=[tf.TensorSpec([length], tf.float32)])
        def add(tensor):  # identity: a fresh tensor on the replica's device (an eager constant sits on localhost)
            return strategy.run(lambda t: tf.distribute.get_replica_context().all_reduce("SUM", tf.identity(t)),
                                args=(tensor,))

        _ADDERS[key] = add
    return _ADDERS[key]


def worker_share(strategy):
    """This worker's ``core.models.features.WorkerShare`` of an embedding pass: every N-th image, gathered by all-reduce.

    Raises WorkerLost (from the gather) when another worker stopped answering.
    """
    from core.models.features import WorkerShare

    def gather(values) -> np.ndarray:
        try:
            return sum_over_workers(strategy, values)
        except LOST_WORKER_ERRORS as exc:
            raise _worker_lost(strategy, exc) from exc

    return WorkerShare(index=int(strategy.cluster_resolver.task_id or 0), count=_worker_count(strategy),
                       gather=gather)


def stop_agreement(strategy):
    """``agree(flag)``: True on every worker when ``flag`` is True on any (``RunReporter.share_stop``).

    Raises WorkerLost when another worker stopped answering (as a training step does).
    """
    def agree(flag: bool) -> bool:
        try:
            return bool(sum_over_workers(strategy, [float(flag)])[0] > 0)
        except LOST_WORKER_ERRORS as exc:
            raise _worker_lost(strategy, exc) from exc

    return agree


def _agree_weights(strategy, model) -> None:
    """Make every worker start from the same weights (the mean of theirs: a head fit on each worker from the same
    embeddings may differ in its last bits between machines)."""
    variables = [v for v in model.weights if "float" in str(v.dtype)]

    @tf.function
    def mean():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
            "MEAN", [tf.identity(v) for v in variables]))

    if not variables:
        return
    values = tf.nest.map_structure(lambda value: strategy.experimental_local_results(value)[0], mean())
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)
