"""Gradient diagnostics: per-layer gradient norms in History, finite-difference gradient checks,
and plots."""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 8)).astype(np.float32)
Y = rng.integers(0, 3, size=64)


def test_gradient_monitor_records_each_layer_and_matches_a_numpy_norm():
    model = fn.Sequential([layers.Input((8,)), layers.Dense(5, activation="tanh", name="hidden"),
                           layers.Dense(3, activation="softmax", name="out")])  # fmt: skip
    model.compile(optimizer=fn.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    hist = model.fit(X, Y, batch_size=64, epochs=2, callbacks=[fn.callbacks.GradientMonitor()], verbose=0)
    assert {"grad_norm/hidden", "grad_norm/out"} <= set(hist.history)
    # Learning rate 0: every step sees the same weights, so the epoch mean is one gradient's norm.
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    h = np.tanh(X @ w1 + b1)
    z = h @ w2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(3)[Y]) / 64
    dw2, db2 = h.T @ dz, dz.sum(0)
    want = np.sqrt((dw2**2).sum() + (db2**2).sum())
    assert hist.history["grad_norm/out"][-1] == pytest.approx(want, rel=1e-4)


def test_vanishing_gradients_show_in_a_deep_sigmoid_stack():
    model = fn.Sequential([layers.Input((8,))])
    for i in range(8):
        model.add(layers.Dense(16, activation="sigmoid", name=f"s{i}"))
    model.add(layers.Dense(3, activation="softmax", name="head"))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    hist = model.fit(X, Y, epochs=1, callbacks=[fn.callbacks.GradientMonitor()], verbose=0)
    assert hist.history["grad_norm/s0"][0] < hist.history["grad_norm/s7"][0] / 100


def test_check_gradients_is_small_for_a_correct_model():
    body = [
        layers.Dense(6, activation="tanh"),
        layers.BatchNormalization(),
        layers.Dense(3, activation="softmax"),
    ]
    model = fn.Sequential([layers.Input((8,)), *body])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert fn.testing.check_gradients(model, X[:16], Y[:16]) < 2e-2


def test_plots_need_matplotlib_or_draw():
    model = fn.Sequential([layers.Input((8,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(
        X, Y, epochs=2, validation_split=0.25, callbacks=[fn.callbacks.GradientMonitor()], verbose=0
    )
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="matplotlib"):
            hist.plot()
        return
    import matplotlib

    matplotlib.use("Agg")
    assert len(hist.plot().axes) == 3  # loss, accuracy, learning_rate
    assert len(hist.plot_gradients().axes) == 1


def test_check_gradients_catches_a_wrong_gradient():
    """A model whose analytic gradient is wrong on purpose: the loss uses a weight the engine's
    gradient ignores (the check compares against the loss actually computed)."""
    model = fn.Sequential([layers.Input((8,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    core = model._core
    original = core.compute_gradients

    class Broken:
        def __getattr__(self, name):
            return getattr(core, name)

        def compute_gradients(self, x, y):
            loss, grads = original(x, y)
            return loss, [g * 0.5 for g in grads]

    model._core = Broken()
    assert fn.testing.check_gradients(model, X[:16], Y[:16]) > 0.3


def test_early_layers_get_smaller_gradients_with_sigmoid_than_with_relu_batchnorm():
    def deep(body):
        model = fn.Sequential([layers.Input((8,))])
        for i in range(10):
            for la in body(i):
                model.add(la)
        model.add(layers.Dense(3, activation="softmax", name="head"))
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        return model.fit(X, Y, epochs=1, callbacks=[fn.callbacks.GradientMonitor()], verbose=0).history

    fn.utils.set_random_seed(0)
    sigmoid = deep(lambda i: [layers.Dense(16, activation="sigmoid", name=f"d{i}")])
    relu_bn = deep(lambda i: [layers.Dense(16, name=f"d{i}"), layers.BatchNormalization(), layers.ReLU()])
    # Relative to the last hidden layer, the first one's gradient collapses only with sigmoid.
    ratio = lambda h: h["grad_norm/d0"][0] / h["grad_norm/d9"][0]  # noqa: E731
    assert ratio(sigmoid) < 1e-3 and ratio(relu_bn) > 1e-1, (ratio(sigmoid), ratio(relu_bn))
