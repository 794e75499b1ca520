"""Heads chosen, not guessed: candidate classifiers on cached embeddings, scored by k-fold cross-validation.

Every candidate is one of two families that map onto the Keras head of ``core.models.classifier`` exactly:

- ``linear``: multinomial logistic regression with an L2 penalty (scikit-learn, L-BFGS) on the raw embeddings
  (measured on the shared datasets: standardizing them first lost 1 to 4 points of cross-validated accuracy, since
  it amplifies rarely active ReLU features); the Keras head is dropout + softmax Dense.
- ``mlp``: one hidden ReLU layer with dropout before it and decoupled weight decay (Keras, AdamW, cosine schedule),
  trained on standardized embeddings with the standardization folded into ``head_hidden``.

Folds are stratified and grouped by image content (``StratifiedGroupKFold``), so a duplicate never sits on both
sides of a fold. The winner is refit on all training embeddings and its weights are loaded into an ordinary Keras
head, so export, prediction and Grad-CAM see nothing unusual.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from core.errors import ConfigError

HEAD_CHOICES = ("auto", "linear", "mlp", "keras")
MAX_FOLDS = 5
LARGE_DATA = 1000  # above this many training images, 3 folds are enough (and 5 would cost too long)


@dataclass(frozen=True)
class HeadCandidate:
    """One head recipe.

    Attributes:
        name: Shown to the user, e.g. ``linear C=0.1``.
        family: ``linear`` or ``mlp``.
        l2: Inverse L2 strength ``C`` for ``linear`` (smaller is stronger).
        hidden_units: Hidden layer width for ``mlp``.
        dropout: Dropout before the hidden layer for ``mlp``.
        weight_decay: AdamW decoupled weight decay for ``mlp``.
        epochs: Passes over the embeddings for ``mlp``.
    """

    name: str
    family: str
    l2: float = 1.0
    hidden_units: int = 0
    dropout: float = 0.0
    weight_decay: float = 0.0
    epochs: int = 0


# Strongest regularization first: each fit warm-starts from the previous one, which saves most iterations.
LINEAR_CANDIDATES = tuple(HeadCandidate(f"linear C={c:g}", "linear", l2=c) for c in (0.01, 0.1, 1.0, 10.0))
MLP_CANDIDATES = (HeadCandidate("mlp 256, dropout 0.5", "mlp", hidden_units=256, dropout=0.5, weight_decay=1e-3,
                                epochs=20),)


def candidates_for(head: str) -> tuple[HeadCandidate, ...]:
    """The candidates a ``TrainConfig.head`` setting lets cross-validation choose from."""
    if head == "auto":
        return LINEAR_CANDIDATES + MLP_CANDIDATES
    if head == "linear":
        return LINEAR_CANDIDATES
    if head == "mlp":
        return MLP_CANDIDATES
    raise ConfigError(f"head={head!r} has no cross-validated candidates; use one of auto, linear, mlp.")


@dataclass
class FittedHead:
    """Weights for a Keras head built with ``hidden_units`` (0: none), as ``(kernel, bias)`` per Dense layer."""

    candidate: HeadCandidate
    layers: list[tuple[np.ndarray, np.ndarray]]

    @property
    def hidden_units(self) -> int:
        return self.candidate.hidden_units

    def predict_proba(self, features) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)
        for kernel, bias in self.layers[:-1]:
            x = np.maximum(x @ kernel + bias, 0.0)
        kernel, bias = self.layers[-1]
        logits = x @ kernel + bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


def _standardizer(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    return mean, np.where(scale > 1e-6, scale, 1.0)


def _fold_standardization(kernel, bias, mean, scale):
    """Weights on raw features equivalent to ``((x - mean) / scale) @ kernel + bias``."""
    folded = kernel / scale[:, None]
    return folded.astype(np.float32), (bias - mean / scale @ kernel).astype(np.float32)


def fit_candidate(candidate: HeadCandidate, features, labels, num_classes: int, *, seed: int = 0) -> FittedHead:
    """Fit one candidate on ``features`` (N, D) and int ``labels`` (N,)."""
    return fit_candidates([candidate], features, labels, num_classes, seed=seed)[0]


def fit_candidates(candidates, features, labels, num_classes: int, *, seed: int = 0) -> list[FittedHead]:
    """Fit several candidates on the same data; linear ones share one warm-started L-BFGS path (in order)."""
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    mean, scale = _standardizer(features)
    linear = [c for c in candidates if c.family == "linear"]
    fitted: dict[str, list] = {}
    # One BLAS thread: these matrices are small, and two OpenBLAS threads on a busy 2-core machine measured 5x
    # slower than one (they spin waiting for each other); folds run side by side instead (``cross_validate``).
    with threadpool_limits(limits=1):
        for candidate, layer in zip(linear, _fit_linear_path(features, labels, num_classes,
                                                             [c.l2 for c in linear], seed), strict=True):
            fitted[candidate.name] = [layer]
        for candidate in candidates:
            if candidate.family == "mlp":
                layers = _fit_mlp((features - mean) / scale, labels, num_classes, candidate, seed)
                layers[0] = _fold_standardization(*layers[0], mean, scale)
                fitted[candidate.name] = layers
            elif candidate.family != "linear":
                raise ConfigError(f"Unknown head family {candidate.family!r}; use linear or mlp.")
    out = []
    for candidate in candidates:
        layers = fitted[candidate.name]
        out.append(FittedHead(candidate, [(np.asarray(k, np.float32), np.asarray(b, np.float32)) for k, b in layers]))
    return out


def _fit_linear_path(z, labels, num_classes, strengths, seed):
    from sklearn.linear_model import LogisticRegression

    present = np.unique(labels)
    # tol 1e-3 rather than 1e-4: measured on the shared datasets' embeddings, the same held-out accuracy (or one
    # image better) at a tenth of the L-BFGS iterations (sign_language_digits: 13 s to 1.2 s for the path).
    model = LogisticRegression(max_iter=300, tol=1e-3, random_state=seed, warm_start=True)
    layers = []
    for strength in strengths:
        model.set_params(C=strength)
        model.fit(z, labels)
        layers.append(_linear_layer(model, present, z.shape[1], num_classes))
    return layers


def _linear_layer(model, present, dim, num_classes):
    kernel = np.zeros((dim, num_classes))
    bias = np.full(num_classes, -30.0)  # a class absent from these labels gets (almost) no probability
    if len(present) == 2:  # scikit-learn keeps one column for two classes: logit of class 1 against class 0
        kernel[:, present[1]] = model.coef_[0] / 2
        kernel[:, present[0]] = -model.coef_[0] / 2
        bias[present[1]], bias[present[0]] = model.intercept_[0] / 2, -model.intercept_[0] / 2
    else:
        kernel[:, model.classes_] = model.coef_.T
        bias[model.classes_] = model.intercept_
    return kernel, bias


def _fit_mlp(z, labels, num_classes, candidate: HeadCandidate, seed):
    """Minibatch AdamW with a cosine schedule, dropout on the input, in NumPy (no per-step framework overhead)."""
    rng = np.random.default_rng(seed)
    dim, hidden = z.shape[1], candidate.hidden_units
    limit1, limit2 = np.sqrt(6 / (dim + hidden)), np.sqrt(6 / (hidden + num_classes))
    params = [rng.uniform(-limit1, limit1, (dim, hidden)).astype(np.float32), np.zeros(hidden, np.float32),
              rng.uniform(-limit2, limit2, (hidden, num_classes)).astype(np.float32),
              np.zeros(num_classes, np.float32)]
    moments = [np.zeros_like(p) for p in params]
    velocities = [np.zeros_like(p) for p in params]
    batch_size, peak, keep = 64, 1e-3, 1.0 - candidate.dropout
    batches = int(np.ceil(len(z) / batch_size))
    total, step = batches * candidate.epochs, 0
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    scratch = [(np.empty_like(p), np.empty_like(p)) for p in params]  # in-place updates: no temporaries per step
    for _ in range(candidate.epochs):
        order = rng.permutation(len(z))
        for start in range(0, len(z), batch_size):
            index = order[start:start + batch_size]
            grads = _mlp_gradients(params, z[index], onehot[index], keep, rng)
            step += 1
            rate = peak * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * step / total)))
            first, second = 1 / (1 - 0.9 ** step), 1 / (1 - 0.999 ** step)
            for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
                _adamw_step(param, grad, moments[i], velocities[i], *scratch[i], rate=rate, first=first,
                            second=second, decay=candidate.weight_decay if i % 2 == 0 else 0.0)
    return [(params[0], params[1]), (params[2], params[3])]


def _adamw_step(param, grad, moment, velocity, a, b, *, rate, first, second, decay) -> None:
    """One AdamW update of ``param`` in place (``a``, ``b``: scratch arrays of its shape)."""
    moment *= 0.9
    np.multiply(grad, 0.1, out=a)
    moment += a
    velocity *= 0.999
    np.multiply(grad, grad, out=a)
    a *= 0.001
    velocity += a
    np.multiply(velocity, second, out=a)
    np.sqrt(a, out=a)
    a += 1e-7
    np.multiply(moment, first, out=b)
    b /= a
    if decay:
        np.multiply(param, decay, out=a)
        b += a
    b *= rate
    param -= b


def _mlp_gradients(params, x, onehot, keep, rng):
    w1, b1, w2, b2 = params
    mask = (rng.random(x.shape) < keep).astype(np.float32) / keep if keep < 1 else 1.0
    xd = x * mask
    pre = xd @ w1 + b1
    hidden = np.maximum(pre, 0.0)
    logits = hidden @ w2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    delta = (probs - onehot) / len(x)
    grad_w2, grad_b2 = hidden.T @ delta, delta.sum(axis=0)
    back = (delta @ w2.T) * (pre > 0)
    return [xd.T @ back, back.sum(axis=0), grad_w2, grad_b2]


def fold_indices(labels, groups, *, folds: int = MAX_FOLDS, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, content-grouped folds; fewer folds when the smallest class is small.

    Raises:
        ConfigError: a class with fewer than 2 images (nothing to cross-validate).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels)
    smallest = int(np.bincount(labels).astype(float)[np.unique(labels)].min())
    k = min(folds, smallest)
    if k < 2:
        raise ConfigError("Cross-validation needs at least 2 training images in every class; add images.")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


def cross_validate(candidates, features, labels, groups, num_classes: int, *, seed: int = 0,
                   should_stop=None, on_candidate=None) -> list[dict]:
    """Mean out-of-fold accuracy of each candidate, the chosen one first.

    Args:
        candidates: ``HeadCandidate``s.
        features: (N, D) embeddings of the training images.
        labels: (N,) class indices.
        groups: (N,) content hashes (duplicates share a fold).
        num_classes: classes of the model.
        seed: fold shuffling and initialisers.
        should_stop: optional callable; True ends the search early (raises ``StopIteration``).
        on_candidate: optional callable(done, total) after each fit (a fold of one family).

    Returns:
        One dict per candidate: ``name``, ``family``, ``accuracy``, ``std`` (the sample standard deviation of its
        fold scores), ``folds``, ``seconds``, ``candidate``; first the chosen one (``one_standard_error_choice``),
        then the others by accuracy.
    """
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    folds = fold_indices(labels, groups, folds=MAX_FOLDS if len(labels) <= LARGE_DATA else 3, seed=seed)
    scores = {candidate.name: [0.0] * len(folds) for candidate in candidates}
    started = time.perf_counter()
    # One task per fold and family: the linear path of a fold, or one hidden-layer candidate on it. The costly
    # ones start first, so the two threads finish together rather than one of them fitting the last fold alone.
    linear = [c for c in candidates if c.family == "linear"]
    families = [[c] for c in candidates if c.family != "linear"] + ([linear] if linear else [])
    tasks = [(fold, family) for family in families for fold in range(len(folds))]

    def one_task(fold, family):
        if should_stop is not None and should_stop():
            return None
        train_index, test_index = folds[fold]
        fitted = fit_candidates(family, features[train_index], labels[train_index], num_classes, seed=seed)
        return [(head.candidate.name, float(np.mean(head.predict_proba(features[test_index]).argmax(axis=1)
                                                    == labels[test_index]))) for head in fitted]

    # Side by side, one BLAS thread each (NumPy and SciPy release the GIL in the heavy parts).
    with ThreadPoolExecutor(max_workers=max(1, min(len(tasks), os.cpu_count() or 1))) as pool:
        futures = [pool.submit(one_task, fold, family) for fold, family in tasks]
        for done, (future, (fold, _)) in enumerate(zip(futures, tasks, strict=True), start=1):
            result = future.result()
            if result is None:
                for pending in futures:
                    pending.cancel()
                raise StopIteration
            for name, score in result:
                scores[name][fold] = score
            if on_candidate is not None:
                on_candidate(done, len(tasks))
    seconds = round((time.perf_counter() - started) / max(len(candidates), 1), 3)
    results = [{"name": c.name, "family": c.family, "accuracy": float(np.mean(scores[c.name])),
                "std": float(np.std(scores[c.name], ddof=1 if len(folds) > 1 else 0)), "folds": len(folds),
                "seconds": seconds, "candidate": asdict(c)} for c in candidates]
    order = sorted(range(len(results)), key=lambda i: (-round(results[i]["accuracy"], 6), i))
    ranked = [results[i] for i in order]
    chosen = one_standard_error_choice(ranked, candidates)
    return [ranked[chosen]] + [r for i, r in enumerate(ranked) if i != chosen]


def complexity(candidate: HeadCandidate) -> tuple:
    """Sort key, simplest first: linear before a hidden layer, and the stronger the L2 (smaller C) the simpler."""
    if candidate.family == "linear":
        return (0, 0, candidate.l2)
    return (1, candidate.hidden_units, -candidate.weight_decay)


def one_standard_error_choice(ranked: list[dict], candidates) -> int:
    """Index in ``ranked`` (best first) of the simplest candidate scoring within one standard error of the best.

    The one-standard-error rule (Hastie, Tibshirani and Friedman, *The Elements of Statistical Learning*, 7.10):
    on small data the fold scores of candidates differ by a few images, so the top score is partly luck; among
    those statistically level with it, the simplest generalizes at least as well and is less of a gamble.
    The standard error is the fold scores' sample standard deviation over the square root of the folds.
    Measured by nested cross-validation on the shared datasets (the rule choosing inside each outer fold), this
    rule, the plain best score and a finer L2 grid hand over the same accuracy within 0.1 point; with the
    population standard deviation instead, the linear head missed the threshold on brain_tumor_mri's 202 training
    images by 0.0006, so the hidden-layer head was chosen: a head nested cross-validation never chose there, 2.6
    points below the linear one in its outer folds.
    """
    best = ranked[0]
    threshold = best["accuracy"] - best["std"] / np.sqrt(max(best["folds"], 1)) - 1e-9
    by_name = {c.name: c for c in candidates}
    level = [i for i, r in enumerate(ranked) if r["accuracy"] >= threshold]
    return min(level, key=lambda i: (complexity(by_name[ranked[i]["name"]]), i))


def candidate_from_dict(data: dict) -> HeadCandidate:
    return HeadCandidate(**data)


def load_head_weights(head_model, fitted: FittedHead) -> None:
    """Copy a fitted head into a Keras head built by ``core.models.classifier`` with ``hidden_units=fitted.hidden_units``."""
    dense = [layer for layer in head_model.layers if layer.name in ("head_hidden", "predictions")]
    if len(dense) != len(fitted.layers):
        raise ConfigError(f"The Keras head has {len(dense)} dense layers but the fitted head has "
                          f"{len(fitted.layers)}; build it with hidden_units={fitted.hidden_units}.")
    for layer, (kernel, bias) in zip(dense, fitted.layers, strict=True):
        layer.set_weights([kernel, bias])
