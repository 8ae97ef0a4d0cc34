"""Dense with each activation against numpy formulas (note 000), and the numpy helpers."""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers

X = np.random.default_rng(1).normal(size=(9, 4)).astype(np.float32) * 3

FORMULAS = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "softmax": lambda z: (
        np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
    ),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_dense_forward_matches_formula(name):
    model = fn.Sequential([layers.Input((4,)), layers.Dense(5, activation=name)])
    w, b = model.get_weights()
    z = X.astype(np.float64) @ w + b
    np.testing.assert_allclose(model.predict(X, verbose=0), FORMULAS[name](z), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(getattr(fn.activations, name)(z), FORMULAS[name](z), rtol=1e-5, atol=1e-6)


def test_activation_functions_are_accepted_as_callables():
    layer = layers.Dense(3, activation=fn.activations.relu)
    assert layer.activation == "relu"
    assert layers.Dense(3).activation == "linear"


def test_extreme_values_stay_finite():
    z = np.array([[-1e4, 0.0, 1e4]], dtype=np.float32)
    for name in FORMULAS:
        assert np.all(np.isfinite(getattr(fn.activations, name)(z)))
