"""Losses called directly, against numpy formulas (note 000, note 002 appendix B)."""

import numpy as np
import pytest

import ferronet as fn

rng = np.random.default_rng(0)
LOGITS = rng.normal(size=(8, 5)).astype(np.float32) * 3
LABELS = rng.integers(0, 5, size=8)
ONEHOT = np.eye(5, dtype=np.float32)[LABELS]


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_mse():
    y = rng.normal(size=(8, 5))
    assert fn.losses.MeanSquaredError()(y, LOGITS) == pytest.approx(np.mean((LOGITS - y) ** 2), rel=1e-5)
    assert fn.losses.get("mse")(y, LOGITS) == pytest.approx(np.mean((LOGITS - y) ** 2), rel=1e-5)


def test_categorical_crossentropy_from_probabilities_and_logits():
    p = softmax(LOGITS.astype(np.float64))
    want = -np.mean(np.sum(ONEHOT * np.log(np.clip(p, 1e-7, 1 - 1e-7)), axis=1))
    assert fn.losses.CategoricalCrossentropy()(ONEHOT, p) == pytest.approx(want, rel=1e-5)
    exact = -np.mean(np.sum(ONEHOT * np.log(p), axis=1))
    got = fn.losses.CategoricalCrossentropy(from_logits=True)(ONEHOT, LOGITS)
    assert got == pytest.approx(exact, rel=1e-5)


def test_sparse_categorical_crossentropy():
    p = softmax(LOGITS.astype(np.float64))
    exact = -np.mean(np.log(p[np.arange(8), LABELS]))
    assert fn.losses.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS) == pytest.approx(
        exact, rel=1e-5
    )
    assert fn.losses.SparseCategoricalCrossentropy()(LABELS, p) == pytest.approx(exact, rel=1e-4)


def test_unnormalised_probabilities_are_normalised_as_in_keras():
    p = np.array([[2.0, 1.0, 1.0]], dtype=np.float32)
    want = -np.log(0.5)
    assert fn.losses.CategoricalCrossentropy()(np.array([[1, 0, 0]]), p) == pytest.approx(want, rel=1e-6)


def test_large_logits_are_stable():
    z = np.array([[1e4, -1e4, 0.0]], dtype=np.float32)
    assert fn.losses.SparseCategoricalCrossentropy(from_logits=True)([0], z) == pytest.approx(0.0, abs=1e-6)
    assert fn.losses.SparseCategoricalCrossentropy(from_logits=True)([1], z) == pytest.approx(2e4, rel=1e-6)


def test_label_range_is_checked():
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        fn.losses.SparseCategoricalCrossentropy()([5] * 8, softmax(LOGITS))


def test_config():
    loss = fn.losses.CategoricalCrossentropy(from_logits=True)
    assert loss.get_config() == {"name": "categorical_crossentropy", "from_logits": True}
    assert fn.losses.CategoricalCrossentropy.from_config(loss.get_config()).from_logits
