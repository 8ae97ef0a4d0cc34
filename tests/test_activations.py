"""Activations against formulas written here in numpy (note 000, note 001, note 002 appendix B):
as functions, inside Dense, and as layers (ReLU, LeakyReLU, Softmax, PReLU)."""

import math

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers

Z = np.concatenate([np.linspace(-6, 6, 49), [-30.0, -1e-3, 0.0, 1e-3, 30.0]]).astype(np.float64)


def np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def np_softplus(z):
    return np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)


def np_erf(z):
    return np.vectorize(math.erf)(z)


ELU = lambda z, a=1.0: np.where(z > 0, z, a * (np.exp(np.minimum(z, 0)) - 1))  # noqa: E731

FORMULAS = {
    "linear": lambda z: z,
    "step": lambda z: (z > 0).astype(float),
    "sigmoid": np_sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "gelu": lambda z: 0.5 * z * (1 + np_erf(z / np.sqrt(2))),
    "swish": lambda z: z * np_sigmoid(z),
    "silu": lambda z: z * np_sigmoid(z),
    "elu": ELU,
    "selu": lambda z: 1.0507009873554805 * ELU(z, 1.6732632423543772),
    "softplus": np_softplus,
    "softsign": lambda z: z / (1 + np.abs(z)),
    "hard_sigmoid": lambda z: np.clip(z / 6 + 0.5, 0, 1),
    "mish": lambda z: z * np.tanh(np_softplus(z)),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_elementwise_functions_match_formulas(name):
    got = getattr(fn.activations, name)(Z)
    assert got.dtype == np.float32 and got.shape == Z.shape
    np.testing.assert_allclose(got, FORMULAS[name](Z), rtol=2e-5, atol=2e-6)


def test_options():
    np.testing.assert_allclose(
        fn.activations.leaky_relu(Z, negative_slope=0.3), np.where(Z > 0, Z, 0.3 * Z), rtol=1e-6
    )
    np.testing.assert_allclose(fn.activations.elu(Z, alpha=0.5), ELU(Z, 0.5), rtol=1e-5, atol=1e-7)
    tanh_form = 0.5 * Z * (1 + np.tanh(np.sqrt(2 / np.pi) * (Z + 0.044715 * Z**3)))
    np.testing.assert_allclose(fn.activations.gelu(Z, approximate=True), tanh_form, rtol=1e-5, atol=1e-6)


def np_softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_softmax_axis_temperature_and_log_softmax():
    z = np.random.default_rng(0).normal(size=(4, 6)) * 3
    np.testing.assert_allclose(fn.activations.softmax(z), np_softmax(z), rtol=1e-5)
    np.testing.assert_allclose(fn.activations.softmax(z, axis=0), np_softmax(z, axis=0), rtol=1e-5)
    # Note 002 appendix B: temperature T = 1/c; small T tends to argmax, large T to uniform.
    np.testing.assert_allclose(fn.activations.softmax(z, temperature=0.5), np_softmax(2 * z), rtol=1e-5)
    sharp = fn.activations.softmax(z, temperature=1e-3)
    np.testing.assert_allclose(sharp, np.eye(6)[z.argmax(1)], atol=1e-6)
    flat = fn.activations.softmax(z, temperature=1e4)
    np.testing.assert_allclose(flat, 1 / 6, atol=1e-3)
    lse = z.max(1, keepdims=True) + np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    np.testing.assert_allclose(fn.activations.log_softmax(z), z - lse, rtol=1e-5, atol=1e-5)


def test_extreme_values_stay_finite():
    z = np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]])
    for name in [*FORMULAS, "softmax", "log_softmax"]:
        assert np.all(np.isfinite(getattr(fn.activations, name)(z))), name


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_dense_forward_matches_formula(name):
    x = np.random.default_rng(1).normal(size=(9, 4)).astype(np.float32) * 3
    model = fn.Sequential([layers.Input((4,)), layers.Dense(5, activation=name)])
    w, b = model.get_weights()
    z = x.astype(np.float64) @ w + b
    np.testing.assert_allclose(model.predict(x, verbose=0), FORMULAS[name](z), rtol=2e-5, atol=2e-6)


def test_activation_functions_are_accepted_as_callables():
    assert layers.Dense(3, activation=fn.activations.relu).activation == {"name": "relu"}
    assert layers.Dense(3, activation=fn.activations.silu).activation == {"name": "swish"}
    assert layers.Dense(3).activation == {"name": "linear"}


def test_relu_leaky_relu_and_softmax_layers():
    x = np.random.default_rng(2).normal(size=(7, 5)).astype(np.float32)
    for layer, want in [
        (layers.ReLU(), np.maximum(x, 0)),
        (layers.LeakyReLU(), np.where(x > 0, x, 0.01 * x)),
        (layers.LeakyReLU(negative_slope=0.3), np.where(x > 0, x, 0.3 * x)),
        (layers.Softmax(), np_softmax(x.astype(np.float64))),
        (layers.Softmax(temperature=2.0), np_softmax(x.astype(np.float64) / 2)),
    ]:
        model = fn.Sequential([layers.Input((5,)), layer])
        np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-7)


def test_prelu_slope_is_a_trained_weight():
    model = fn.Sequential([layers.Input((4,)), layers.Dense(6), layers.PReLU(), layers.Dense(1)])
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(4, 6), (6,), (6,), (6, 1), (1,)]
    np.testing.assert_array_equal(weights[2], 0.25)
    x = np.random.default_rng(3).normal(size=(8, 4)).astype(np.float32)
    h = x @ weights[0] + weights[1]
    want = np.where(h > 0, h, 0.25 * h) @ weights[3] + weights[4]
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    model.compile(optimizer=fn.optimizers.SGD(0.1), loss="mse")
    model.fit(x, np.ones(8), epochs=5, verbose=0)
    assert not np.allclose(model.get_weights()[2], 0.25)
    shared = fn.Sequential([layers.Input((4,)), layers.PReLU(shared_axes=[1])])
    assert [w.shape for w in shared.get_weights()] == [(1,)]


def test_step_activation_warns_when_trained():
    model = fn.Sequential([layers.Input((2,)), layers.Dense(2, activation="step"), layers.Dense(1)])
    with pytest.warns(UserWarning, match="step"):
        model.compile(optimizer="sgd", loss="mse")


def test_unknown_activation():
    with pytest.raises(ValueError, match="Unknown activation"):
        fn.activations.get("swishy")
    with pytest.raises(ValueError, match="temperature"):
        fn.activations.softmax([1.0], temperature=0)
