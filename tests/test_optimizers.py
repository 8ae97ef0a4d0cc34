"""SGD and Adam trajectories over several steps against their update formulas in numpy.

The model is one linear Dense layer with MSE, whose gradient has the closed form
``dL/dW = 2/(n k) X^T (XW + b - Y)``, ``dL/db = 2/(n k) sum_rows (XW + b - Y)``.
"""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers

rng = np.random.default_rng(5)
X = rng.normal(size=(16, 3)).astype(np.float64)
Y = rng.normal(size=(16, 2)).astype(np.float64)


def linear_model(optimizer):
    model = fn.Sequential([layers.Input((3,)), layers.Dense(2)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def grads(w, b):
    r = X @ w + b - Y
    scale = 2.0 / r.size
    return scale * X.T @ r, scale * r.sum(0)


def run(optimizer, update, steps=6):
    model = linear_model(optimizer)
    params = [w.astype(np.float64) for w in model.get_weights()]
    state = [dict(), dict()]
    for t in range(1, steps + 1):
        model.train_on_batch(X, Y)
        g = grads(*params)
        params = [update(p, gi, s, t) for p, gi, s in zip(params, g, state)]
    for got, want in zip(model.get_weights(), params):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("lr", [0.1, 0.01])
def test_sgd(lr):
    run(fn.optimizers.SGD(lr), lambda p, g, s, t: p - lr * g)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum(nesterov):
    lr, mu = 0.05, 0.9

    def update(p, g, s, t):
        v = mu * s.get("v", 0.0) - lr * g
        s["v"] = v
        return p + (mu * v - lr * g if nesterov else v)

    run(fn.optimizers.SGD(lr, momentum=mu, nesterov=nesterov), update)


def test_adam():
    lr, b1, b2, eps = 0.02, 0.8, 0.99, 1e-7

    def update(p, g, s, t):
        m = b1 * s.get("m", 0.0) + (1 - b1) * g
        v = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        s["m"], s["v"] = m, v
        lr_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        return p - lr_t * m / (np.sqrt(v) + eps)

    run(fn.optimizers.Adam(lr, beta_1=b1, beta_2=b2, epsilon=eps), update)


def test_optimizers_by_name_have_keras_defaults():
    assert fn.optimizers.get("sgd").get_config() == {
        "name": "SGD",
        "learning_rate": 0.01,
        "momentum": 0.0,
        "nesterov": False,
    }
    adam = fn.optimizers.get("adam").get_config()
    assert adam["learning_rate"] == 0.001 and adam["epsilon"] == 1e-7


def test_recompiling_resets_the_optimizer_state():
    model = linear_model("adam")
    model.train_on_batch(X, Y)
    assert model.optimizer.iterations == 1
    model.compile(optimizer="adam", loss="mse")
    assert model.optimizer.iterations == 0
