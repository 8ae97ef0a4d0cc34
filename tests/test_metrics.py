"""Each metric against a numpy computation over several batches (streaming must equal the
whole-epoch value, not a mean of batch values)."""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers
from ferronet import metrics as M  # noqa: N812

rng = np.random.default_rng(0)
X = rng.normal(size=(103, 4)).astype(np.float32)


def evaluate(model, metric, y, batch_size=10):
    model.compile(optimizer="sgd", loss=model._test_loss, metrics=[metric])
    return model.evaluate(X, y, batch_size=batch_size, verbose=0, return_dict=True)


def classifier(loss="categorical_crossentropy"):
    model = fn.Sequential([layers.Input((4,)), layers.Dense(5, activation="softmax")])
    model._test_loss = loss
    return model


def binary(units=1):
    model = fn.Sequential([layers.Input((4,)), layers.Dense(units, activation="sigmoid")])
    model._test_loss = "binary_crossentropy"
    return model


LABELS = rng.integers(0, 5, size=103)
ONEHOT = np.eye(5, dtype=np.float32)[LABELS]


def test_categorical_and_top_k():
    model = classifier()
    p = model.predict(X, verbose=0)
    assert evaluate(model, "categorical_accuracy", ONEHOT)["categorical_accuracy"] == pytest.approx(
        np.mean(p.argmax(1) == LABELS)
    )
    ranks = (p > p[np.arange(103), LABELS][:, None]).sum(1)
    got = evaluate(model, M.TopKCategoricalAccuracy(k=2), ONEHOT)["top_k_categorical_accuracy"]
    assert got == pytest.approx(np.mean(ranks < 2))
    assert evaluate(model, "top_k_categorical_accuracy", ONEHOT)[
        "top_k_categorical_accuracy"
    ] == pytest.approx(np.mean(ranks < 5))


def test_sparse_variants():
    model = classifier("sparse_categorical_crossentropy")
    p = model.predict(X, verbose=0)
    out = evaluate(model, "sparse_categorical_accuracy", LABELS)
    assert out["sparse_categorical_accuracy"] == pytest.approx(np.mean(p.argmax(1) == LABELS))
    ranks = (p > p[np.arange(103), LABELS][:, None]).sum(1)
    out = evaluate(model, M.SparseTopKCategoricalAccuracy(k=3), LABELS)
    assert out["sparse_top_k_categorical_accuracy"] == pytest.approx(np.mean(ranks < 3))


def test_binary_accuracy_precision_recall():
    model = binary(units=2)
    y = (rng.random(size=(103, 2)) > 0.4).astype(np.float32)
    p = model.predict(X, verbose=0)
    assert evaluate(model, M.BinaryAccuracy(threshold=0.6), y)["binary_accuracy"] == pytest.approx(
        np.mean((p > 0.6) == (y > 0.6))
    )
    tp, fp, fn_ = np.sum((p > 0.5) & (y == 1)), np.sum((p > 0.5) & (y == 0)), np.sum((p <= 0.5) & (y == 1))
    assert evaluate(model, "precision", y)["precision"] == pytest.approx(tp / (tp + fp))
    assert evaluate(model, "recall", y)["recall"] == pytest.approx(tp / (tp + fn_))


def np_auc(p, y, n=200):
    thresholds = np.concatenate([[-1e-7], np.arange(1, n - 1) / (n - 1), [1 + 1e-7]])
    tpr = np.array([np.sum((p > t) & (y == 1)) / np.sum(y == 1) for t in thresholds])
    fpr = np.array([np.sum((p > t) & (y == 0)) / np.sum(y == 0) for t in thresholds])
    return np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2)


def test_auc_matches_the_thresholded_trapezoid_and_the_exact_area():
    model = binary()
    y = (X[:, 0] + rng.normal(size=103) > 0).astype(np.float32)
    p = model.predict(X, verbose=0)[:, 0]
    got = evaluate(model, "auc", y)["auc"]
    assert got == pytest.approx(np_auc(p, y), abs=1e-9)
    pos, neg = p[y == 1], p[y == 0]
    exact = np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :])
    assert got == pytest.approx(exact, abs=0.02)


def test_mse_mae_metrics_on_regression():
    model = fn.Sequential([layers.Input((4,)), layers.Dense(3)])
    model._test_loss = "mse"
    y = rng.normal(size=(103, 3))
    p = model.predict(X, verbose=0)
    assert evaluate(model, "mae", y)["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-5)
    assert evaluate(model, M.MeanSquaredError(), y)["mean_squared_error"] == pytest.approx(
        np.mean((p - y) ** 2), rel=1e-5
    )


def test_accuracy_is_binary_for_bce_multi_label():
    model = binary(units=3)
    y = (rng.random(size=(103, 3)) > 0.5).astype(np.float32)
    p = model.predict(X, verbose=0)
    assert evaluate(model, "accuracy", y)["accuracy"] == pytest.approx(np.mean((p > 0.5) == (y > 0.5)))


def test_metric_that_does_not_fit_the_targets_is_rejected():
    model = classifier("sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="does not fit"):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["precision"])
    with pytest.raises(ValueError, match="Unknown metric"):
        model.compile(optimizer="sgd", loss="mse", metrics=["f2"])
