"""Losses called directly and in training, against numpy formulas written here (note 000, note 002
appendix B, note 004)."""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers

rng = np.random.default_rng(0)
LOGITS = (rng.normal(size=(8, 5)) * 3).astype(np.float32)
LABELS = rng.integers(0, 5, size=8)
ONEHOT = np.eye(5, dtype=np.float32)[LABELS]
EPS = 1e-7


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


P = softmax(LOGITS.astype(np.float64))
Y_REG = rng.normal(size=(8, 5))
MULTI = (rng.random(size=(8, 5)) > 0.5).astype(np.float32)


def test_mse_mae():
    assert fn.losses.MeanSquaredError()(Y_REG, LOGITS) == pytest.approx(
        np.mean((LOGITS - Y_REG) ** 2), rel=1e-5
    )
    assert fn.losses.get("mse")(Y_REG, LOGITS) == pytest.approx(np.mean((LOGITS - Y_REG) ** 2), rel=1e-5)
    assert fn.losses.get("mae")(Y_REG, LOGITS) == pytest.approx(np.mean(np.abs(LOGITS - Y_REG)), rel=1e-5)


@pytest.mark.parametrize("delta", [0.5, 1.0, 3.0])
def test_huber(delta):
    r = np.abs(LOGITS - Y_REG)
    want = np.mean(np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)))
    assert fn.losses.Huber(delta)(Y_REG, LOGITS) == pytest.approx(want, rel=1e-5)


def test_binary_crossentropy_probabilities_and_logits():
    p = np.clip(sigmoid(LOGITS.astype(np.float64)), EPS, 1 - EPS)
    want = np.mean(-(MULTI * np.log(p) + (1 - MULTI) * np.log(1 - p)))
    assert fn.losses.BinaryCrossentropy()(MULTI, sigmoid(LOGITS)) == pytest.approx(want, rel=1e-4)
    exact = np.mean(np.maximum(LOGITS, 0) - LOGITS * MULTI + np.log1p(np.exp(-np.abs(LOGITS))))
    got = fn.losses.BinaryCrossentropy(from_logits=True)(MULTI, LOGITS)
    assert got == pytest.approx(exact, rel=1e-5)


def test_categorical_crossentropy_from_probabilities_and_logits():
    want = -np.mean(np.sum(ONEHOT * np.log(np.clip(P, EPS, 1 - EPS)), axis=1))
    assert fn.losses.CategoricalCrossentropy()(ONEHOT, P) == pytest.approx(want, rel=1e-5)
    exact = -np.mean(np.sum(ONEHOT * np.log(P), axis=1))
    assert fn.losses.CategoricalCrossentropy(from_logits=True)(ONEHOT, LOGITS) == pytest.approx(
        exact, rel=1e-5
    )


def test_sparse_categorical_crossentropy():
    exact = -np.mean(np.log(P[np.arange(8), LABELS]))
    assert fn.losses.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS) == pytest.approx(
        exact, rel=1e-5
    )
    assert fn.losses.SparseCategoricalCrossentropy()(LABELS, P) == pytest.approx(exact, rel=1e-4)


def test_kl_divergence_and_hellinger():
    q = softmax(rng.normal(size=(8, 5)))
    t, p = np.clip(q, EPS, 1), np.clip(P, EPS, 1)
    assert fn.losses.KLDivergence()(q, P) == pytest.approx(np.mean(np.sum(t * np.log(t / p), 1)), rel=1e-4)
    want = np.mean(np.sqrt(np.sum((np.sqrt(P) - np.sqrt(q)) ** 2, 1)) / np.sqrt(2))
    assert fn.losses.get("hellinger")(q, P) == pytest.approx(want, rel=1e-4)
    assert fn.losses.Hellinger()(q, q) == pytest.approx(0.0, abs=1e-6)


def test_label_smoothing_reproduces_note_004():
    # k = 5, eps = 0.01: [0, 0, 1, 0, 0] -> [0.0025, 0.0025, 0.99, 0.0025, 0.0025].
    smoothed = np.array([[0.0025, 0.0025, 0.99, 0.0025, 0.0025]])
    y = np.array([[0, 0, 1, 0, 0]], dtype=np.float32)
    p = softmax(rng.normal(size=(1, 5)))
    want = -np.sum(smoothed * np.log(p))
    got = fn.losses.CategoricalCrossentropy(label_smoothing=0.01)(y, p)
    assert got == pytest.approx(want, rel=1e-5)
    # Binary: targets become eps and 1 - eps.
    pb = sigmoid(rng.normal(size=(4, 3)))
    yb = np.array([[1, 0, 1]] * 4, dtype=np.float32)
    ys = yb * (1 - 2 * 0.1) + 0.1
    want = np.mean(-(ys * np.log(pb) + (1 - ys) * np.log(1 - pb)))
    assert fn.losses.BinaryCrossentropy(label_smoothing=0.1)(yb, pb) == pytest.approx(want, rel=1e-5)


def test_large_logits_are_stable():
    z = np.array([[1e4, -1e4, 0.0]], dtype=np.float32)
    assert fn.losses.SparseCategoricalCrossentropy(from_logits=True)([0], z) == pytest.approx(0.0, abs=1e-6)
    assert fn.losses.SparseCategoricalCrossentropy(from_logits=True)([1], z) == pytest.approx(2e4, rel=1e-6)
    assert np.isfinite(fn.losses.BinaryCrossentropy(from_logits=True)([[0, 1, 1]], z))


def test_unnormalised_probabilities_are_normalised_as_in_keras():
    p = np.array([[2.0, 1.0, 1.0]], dtype=np.float32)
    assert fn.losses.CategoricalCrossentropy()(np.array([[1, 0, 0]]), p) == pytest.approx(
        -np.log(0.5), rel=1e-6
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        fn.losses.SparseCategoricalCrossentropy()([5] * 8, P)
    with pytest.raises(ValueError, match="delta"):
        fn.losses.Huber(0)
    with pytest.raises(ValueError, match="label_smoothing"):
        fn.losses.CategoricalCrossentropy(label_smoothing=2)


def test_config_round_trip():
    for loss in [
        fn.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        fn.losses.BinaryCrossentropy(label_smoothing=0.2),
        fn.losses.Huber(2.0),
        fn.losses.SparseCategoricalCrossentropy(from_logits=True),
        fn.losses.KLDivergence(),
        fn.losses.Hellinger(),
    ]:
        again = type(loss).from_config(loss.get_config())
        assert again.get_config() == loss.get_config()


def test_multi_label_problem_trains_with_sigmoid_and_bce():
    r = np.random.default_rng(1)
    x = r.normal(size=(600, 6)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0, x[:, 3] * x[:, 4] > 0], axis=1).astype(np.float32)
    model = fn.Sequential(
        [layers.Input((6,)), layers.Dense(32, activation="relu"), layers.Dense(3, activation="sigmoid")]
    )
    model.compile(optimizer=fn.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x[:500], y[:500], epochs=40, verbose=0)
    loss, acc = model.evaluate(x[500:], y[500:], verbose=0)
    assert acc > 0.9


def test_huber_is_robust_to_outliers_compared_with_mse():
    r = np.random.default_rng(2)
    x = r.uniform(-1, 1, size=(400, 1)).astype(np.float32)
    y = 3 * x[:, 0] + 0.5
    y_noisy = y.copy()
    y_noisy[::10] += 40.0  # 10% gross outliers

    def fit(loss):
        fn.utils.set_random_seed(0)
        model = fn.Sequential([layers.Input((1,)), layers.Dense(1)])
        model.compile(optimizer=fn.optimizers.SGD(0.05), loss=loss)
        model.fit(x, y_noisy, epochs=200, batch_size=400, verbose=0)
        return model.get_weights()

    (_, b_mse), (w_hub, b_hub) = fit("mse"), fit(fn.losses.Huber(1.0))
    assert abs(b_hub[0] - 0.5) < abs(b_mse[0] - 0.5) / 3
    assert abs(w_hub[0, 0] - 3.0) < 0.5
