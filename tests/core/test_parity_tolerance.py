"""A parity verdict is "ok" only within a stated tolerance, and says what it compared."""

from __future__ import annotations

import numpy as np

from core.delivery.export import FLOAT_TOLERANCE, QUANTIZED_MEAN_TOLERANCE, _parity_row, describe_parity


def _reference(images: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3) * 0.3, images)
    return probs.astype(np.float32)


def _with_one_big_change(reference: np.ndarray) -> np.ndarray:
    probs = reference.copy()
    row = int(np.argmax(probs.max(axis=1)))  # a confident image: its class survives a 0.3 move
    top = int(probs[row].argmax())
    probs[row, top] -= 0.305
    probs[row, (top + 1) % 3] += 0.305
    return probs


def test_a_float_format_with_a_0_3_difference_fails():
    reference = _reference()
    row = _parity_row("tflite", _with_one_big_change(reference), reference)
    assert row["agreement"] == 1.0 and abs(row["max_abs_diff"] - 0.305) < 1e-3
    assert row["tolerance"] == FLOAT_TOLERANCE and row["tolerance_on"] == "max_abs_diff"
    assert not row["passed"]
    assert describe_parity("tflite", row).endswith("FAILED")


def test_quantized_is_judged_on_the_mean_difference_and_says_so():
    reference = _reference()
    row = _parity_row("tflite_dynamic", _with_one_big_change(reference), reference)
    assert row["tolerance"] == QUANTIZED_MEAN_TOLERANCE and row["tolerance_on"] == "mean_abs_diff"
    assert row["passed"]
    text = describe_parity("tflite_dynamic", row)
    assert "200 validation images" in text and "largest 0.305" in text and "quantized tolerance: mean" in text
    assert text.endswith(": ok")


def test_quantized_with_a_large_mean_difference_fails():
    reference = _reference()
    noisy = np.clip(reference + np.random.default_rng(1).normal(0, 0.05, reference.shape), 0, 1)
    noisy[np.arange(len(noisy)), reference.argmax(1)] += 1.0  # same class everywhere
    row = _parity_row("tflite_dynamic", noisy.astype(np.float32), reference)
    assert row["agreement"] == 1.0 and row["mean_abs_diff"] > QUANTIZED_MEAN_TOLERANCE
    assert not row["passed"]
