"""Every optimizer's trajectory over several steps on a small network against its update rule
written here in numpy, plus weight decay, clipping, schedules and state handling.

The network is one linear Dense layer with MSE, whose gradient has the closed form
``dL/dW = 2/(n k) X^T (XW + b - Y)``, ``dL/db = 2/(n k) sum_rows (XW + b - Y)``.
"""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers
from ferronet.optimizers import schedules

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


def run(optimizer, update, steps=6, decay_kernel=None):
    """``update(p, g, state, t)`` is the rule for one tensor; ``decay_kernel(w)`` is applied to the
    kernel before it (decoupled weight decay)."""
    model = linear_model(optimizer)
    params = [w.astype(np.float64) for w in model.get_weights()]
    state = [{}, {}]
    for t in range(1, steps + 1):
        model.train_on_batch(X, Y)
        g = grads(*params)
        if decay_kernel is not None:
            params[0] = decay_kernel(params[0])
        params = [update(p, gi, s, t) for p, gi, s in zip(params, g, state)]
    for got, want in zip(model.get_weights(), params):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    return model


def adam_rule(lr, b1, b2, eps, amsgrad=False):
    def update(p, g, s, t):
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        s["vmax"] = np.maximum(s.get("vmax", 0.0), s["v"])
        v = s["vmax"] if amsgrad else s["v"]
        lr_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        return p - lr_t * s["m"] / (np.sqrt(v) + eps)

    return update


@pytest.mark.parametrize("lr", [0.1, 0.01])
def test_sgd(lr):
    run(fn.optimizers.SGD(lr), lambda p, g, s, t: p - lr * g)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum(nesterov):
    lr, mu = 0.05, 0.9

    def update(p, g, s, t):
        s["v"] = mu * s.get("v", 0.0) - lr * g
        return p + (mu * s["v"] - lr * g if nesterov else s["v"])

    run(fn.optimizers.SGD(lr, momentum=mu, nesterov=nesterov), update)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam(amsgrad):
    run(
        fn.optimizers.Adam(0.02, beta_1=0.8, beta_2=0.99, amsgrad=amsgrad),
        adam_rule(0.02, 0.8, 0.99, 1e-7, amsgrad),
    )


def test_adagrad():
    lr, eps = 0.1, 1e-7

    def update(p, g, s, t):
        s["a"] = s.get("a", 0.1) + g * g
        return p - lr * g / np.sqrt(s["a"] + eps)

    run(fn.optimizers.Adagrad(lr), update)


@pytest.mark.parametrize("momentum, centered", [(0.0, False), (0.0, True), (0.6, False), (0.6, True)])
def test_rmsprop(momentum, centered):
    lr, rho, eps = 0.01, 0.9, 1e-7

    def update(p, g, s, t):
        s["s"] = rho * s.get("s", 0.0) + (1 - rho) * g * g
        denom = s["s"] + eps
        if centered:
            s["a"] = rho * s.get("a", 0.0) + (1 - rho) * g
            denom = s["s"] - s["a"] ** 2 + eps
        inc = lr * g / np.sqrt(denom)
        if momentum:
            s["b"] = momentum * s.get("b", 0.0) + inc
            return p - s["b"]
        return p - inc

    run(fn.optimizers.RMSprop(lr, momentum=momentum, centered=centered), update)


def test_adamax():
    lr, b1, b2, eps = 0.02, 0.9, 0.999, 1e-7

    def update(p, g, s, t):
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["u"] = np.maximum(b2 * s.get("u", 0.0), np.abs(g))
        return p - lr / (1 - b1**t) * s["m"] / (s["u"] + eps)

    run(fn.optimizers.Adamax(lr), update)


def test_nadam():
    lr, b1, b2, eps = 0.02, 0.9, 0.999, 1e-7

    def mu(t):
        return b1 * (1 - 0.5 * 0.96 ** (t / 250))

    def update(p, g, s, t):
        prod = s.get("prod", 1.0) * mu(t)
        s["prod"] = prod
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        m_hat = mu(t + 1) * s["m"] / (1 - prod * mu(t + 1)) + (1 - mu(t)) * g / (1 - prod)
        return p - lr * m_hat / (np.sqrt(s["v"] / (1 - b2**t)) + eps)

    run(fn.optimizers.Nadam(lr), update)


def test_adamw_decays_kernels_only():
    lr, wd = 0.02, 0.1
    run(
        fn.optimizers.AdamW(lr, weight_decay=wd),
        adam_rule(lr, 0.9, 0.999, 1e-7),
        decay_kernel=lambda w: w * (1 - lr * wd),
    )
    # SGD with weight_decay, the same rule.
    run(
        fn.optimizers.SGD(0.1, weight_decay=0.5),
        lambda p, g, s, t: p - 0.1 * g,
        decay_kernel=lambda w: w * (1 - 0.05),
    )


def test_coupled_l2_with_adam_differs_from_decoupled_adamw():
    """Note 000: an L2 penalty passes through Adam's adaptive denominator; decoupled decay does not."""
    fn.utils.set_random_seed(0)
    a = fn.Sequential([layers.Input((3,)), layers.Dense(2, kernel_regularizer=fn.regularizers.L2(0.05))])
    a.compile(optimizer=fn.optimizers.Adam(0.05), loss="mse")
    b = fn.Sequential([layers.Input((3,)), layers.Dense(2)])
    b.compile(optimizer=fn.optimizers.AdamW(0.05, weight_decay=0.1 / 0.05 * 0.05), loss="mse")
    b.set_weights(a.get_weights())
    for _ in range(30):
        a.train_on_batch(X, Y)
        b.train_on_batch(X, Y)
    assert np.abs(a.get_weights()[0] - b.get_weights()[0]).max() > 1e-3


@pytest.mark.parametrize("option", ["clipvalue", "clipnorm", "global_clipnorm"])
def test_clipping_bounds_the_step(option):
    model = linear_model(fn.optimizers.SGD(1.0, **{option: 0.01}))
    before = [w.astype(np.float64) for w in model.get_weights()]
    model.train_on_batch(X * 100, Y)
    steps = [b - a for a, b in zip(model.get_weights(), before)]
    if option == "clipvalue":
        assert max(np.abs(s).max() for s in steps) <= 0.01 + 1e-7
    elif option == "clipnorm":
        assert all(np.linalg.norm(s) <= 0.01 + 1e-6 for s in steps)
    else:
        assert np.sqrt(sum((s**2).sum() for s in steps)) <= 0.01 + 1e-6
    with pytest.raises(ValueError, match="only one"):
        fn.optimizers.SGD(clipnorm=1.0, clipvalue=1.0)


def test_schedule_as_learning_rate_is_applied_per_step():
    sched = schedules.PiecewiseConstantDecay([2], [0.1, 0.01])
    rates = [sched(t) for t in range(6)]
    assert rates == [0.1, 0.1, 0.1, 0.01, 0.01, 0.01]
    run(fn.optimizers.SGD(sched), lambda p, g, s, t: p - rates[t - 1] * g)


def test_state_persists_across_fit_and_resets_on_compile():
    model = linear_model(fn.optimizers.Adam(0.01))
    model.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    assert model.optimizer.iterations == 4
    variables = model.optimizer.variables
    assert int(variables[0]) == 4 and len(variables) == 3 and variables[1].shape == (8,)
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    assert model.optimizer.iterations == 6
    model.compile(optimizer=fn.optimizers.Adam(0.01), loss="mse")
    assert model.optimizer.iterations == 0
    assert all(np.all(v == 0) for v in model.optimizer.variables[1:])


def test_optimizers_by_name_and_config_round_trip():
    for name in ["sgd", "adam", "adamw", "adagrad", "rmsprop", "adamax", "nadam"]:
        opt = fn.optimizers.get(name)
        again = type(opt).from_config(opt.get_config())
        assert again.get_config() == opt.get_config()
    assert fn.optimizers.get("sgd").learning_rate == 0.01
    assert fn.optimizers.get("adam").get_config()["epsilon"] == 1e-7
    assert fn.optimizers.AdamW().weight_decay == 0.004
    opt = fn.optimizers.SGD(schedules.ExponentialDecay(0.1, 10, 0.5))
    cfg = opt.get_config()
    assert fn.optimizers.SGD.from_config(cfg).get_config() == cfg


def test_each_optimizer_trains_a_small_network(digits):
    x, y = digits[0][:400], digits[1][:400]
    opts = fn.optimizers
    for opt in [
        opts.SGD(0.1, momentum=0.9),
        opts.Adagrad(0.1),
        opts.RMSprop(),
        opts.Adam(),
        opts.AdamW(),
        opts.Adamax(0.01),
        opts.Nadam(),
    ]:
        model = fn.Sequential([layers.Input((64,)), layers.Dense(32, activation="relu"),
                               layers.Dense(10, activation="softmax")])  # fmt: skip
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
        hist = model.fit(x, y, epochs=8, verbose=0)
        assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0], type(opt).__name__


def test_lbfgs_fits_a_small_regression_to_near_zero_loss_in_few_iterations():
    r = np.random.default_rng(3)
    x = r.uniform(-1, 1, size=(200, 2)).astype(np.float32)
    y = np.sin(2 * x[:, :1]) + x[:, 1:] ** 2
    fn.utils.set_random_seed(0)
    model = fn.Sequential([layers.Input((2,)), layers.Dense(16, activation="tanh"), layers.Dense(1)])
    model.compile(optimizer=fn.optimizers.LBFGS(max_iter=50), loss="mse")
    hist = model.fit(x, y, epochs=6, verbose=0)
    assert hist.history["loss"][-1] < 1e-3
    assert model.optimizer.iterations == 6
    # The same budget of first-order epochs gets nowhere near.
    sgd = fn.Sequential([layers.Input((2,)), layers.Dense(16, activation="tanh"), layers.Dense(1)])
    sgd.compile(optimizer=fn.optimizers.SGD(0.1), loss="mse")
    assert (
        sgd.fit(x, y, epochs=6, batch_size=None, verbose=0).history["loss"][-1]
        > 10 * hist.history["loss"][-1]
    )
