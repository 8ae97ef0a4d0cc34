"""Regularizers: penalty in the reported loss and gradient in the update, Keras' semantics for
L1/L2, the notes' Lp ("Lm") penalty (note 002)."""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers
from ferronet import regularizers as R  # noqa: N812

rng = np.random.default_rng(0)
X = rng.normal(size=(16, 3)).astype(np.float32)
Y = rng.normal(size=(16, 2)).astype(np.float32)


def model_with(kernel_reg=None, bias_reg=None, lr=0.1):
    model = fn.Sequential(
        [layers.Input((3,)), layers.Dense(2, kernel_regularizer=kernel_reg, bias_regularizer=bias_reg)]
    )
    model.compile(optimizer=fn.optimizers.SGD(lr), loss="mse")
    return model


PENALTIES = [
    (R.L1(0.1), lambda w: 0.1 * np.abs(w).sum(), lambda w: 0.1 * np.sign(w)),
    (R.L2(0.2), lambda w: 0.2 * (w**2).sum(), lambda w: 0.4 * w),
    (
        R.L1L2(0.1, 0.2),
        lambda w: 0.1 * np.abs(w).sum() + 0.2 * (w**2).sum(),
        lambda w: 0.1 * np.sign(w) + 0.4 * w,
    ),
    (R.Lp(3, 0.3), lambda w: 0.3 / 3 * (np.abs(w) ** 3).sum(), lambda w: 0.3 * np.sign(w) * w**2),
]


@pytest.mark.parametrize("reg, penalty, grad", PENALTIES)
def test_penalty_is_added_to_the_loss_and_its_gradient_to_the_update(reg, penalty, grad):
    model = model_with(kernel_reg=reg)
    w, b = (a.astype(np.float64) for a in model.get_weights())
    r = X @ w + b - Y
    data_loss = np.mean(r**2)
    assert model.evaluate(X, Y, verbose=0) == pytest.approx(data_loss + penalty(w), rel=1e-5)
    model.train_on_batch(X, Y)
    g_w = 2 / r.size * X.T @ r + grad(w)
    g_b = 2 / r.size * r.sum(0)
    w2, b2 = model.get_weights()
    np.testing.assert_allclose(w2, w - 0.1 * g_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b2, b - 0.1 * g_b, rtol=1e-5, atol=1e-6)


def test_bias_regularizer_and_strings():
    model = model_with(bias_reg="l2")
    model.set_weights([np.zeros((3, 2)), np.array([1.0, -2.0])])
    b = np.array([1.0, -2.0])
    assert model.evaluate(X, Y, verbose=0) == pytest.approx(np.mean((b - Y) ** 2) + 0.01 * 5, rel=1e-5)


def test_l2_shrinks_weights():
    a, b = model_with(lr=0.05), model_with(kernel_reg=R.L2(0.5), lr=0.05)
    b.set_weights(a.get_weights())
    for m in (a, b):
        m.fit(X, Y, epochs=50, verbose=0, batch_size=16)
    assert np.abs(b.get_weights()[0]).sum() < np.abs(a.get_weights()[0]).sum()


def test_bad_arguments():
    with pytest.raises(ValueError):
        R.L2(-1)
    with pytest.raises(ValueError, match="p must be"):
        R.Lp(0.5)
    with pytest.raises(ValueError, match="Unknown regularizer"):
        R.get("l3")
    assert R.L1L2.from_config(R.L1L2(0.1, 0.2).get_config()).get_config() == {"l1": 0.1, "l2": 0.2}
