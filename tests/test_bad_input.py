"""Bad input gets a clear Python exception naming the problem, never a crash."""

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers


@pytest.fixture
def model():
    m = fn.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


X = np.ones((6, 4), dtype=np.float32)
Y = np.array([0, 1, 2, 0, 1, 2])


def test_mismatched_lengths(model):
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(X, Y[:5], verbose=0)


def test_wrong_feature_count(model):
    with pytest.raises(ValueError, match=r"shape \(None, 4\)"):
        model.fit(np.ones((6, 5)), Y, verbose=0)
    with pytest.raises(ValueError, match=r"shape \(None, 4\)"):
        model.predict(np.ones((6, 3)), verbose=0)


def test_labels_out_of_range(model):
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.fit(X, np.array([0, 1, 2, 3, 0, 1]), verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.fit(X, np.array([0, 1, -1, 0, 0, 1]), verbose=0)
    with pytest.raises(ValueError, match="integers"):
        model.fit(X, np.array([0, 1, 0.5, 0, 0, 1]), verbose=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_x(model, bad):
    x = X.copy()
    x[3, 2] = bad
    with pytest.raises(ValueError, match=r"NaN or Inf \(sample 3, feature 2\)"):
        model.fit(x, Y, verbose=0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.predict(x, verbose=0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.evaluate(x, Y, verbose=0)


def test_nan_in_y():
    m = fn.Sequential([layers.Input((4,)), layers.Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="y contains NaN"):
        m.fit(X, np.array([0, 1, np.nan, 0, 1, 2]), verbose=0)


def test_empty_arrays(model):
    with pytest.raises(ValueError, match="empty"):
        model.fit(np.zeros((0, 4)), np.zeros((0,)), verbose=0)
    with pytest.raises(ValueError, match="empty"):
        model.predict(np.zeros((0, 4)), verbose=0)


def test_non_numeric_arrays(model):
    with pytest.raises(TypeError, match="numbers"):
        model.fit(np.array([["a"] * 4] * 6), Y, verbose=0)
    with pytest.raises(TypeError, match="numbers"):
        model.fit(X, np.array(["a"] * 6), verbose=0)


def test_unknown_names():
    with pytest.raises(ValueError, match="Unknown activation: 'relux'"):
        layers.Dense(3, activation="relux")
    m = fn.Sequential([layers.Input((4,)), layers.Dense(3)])
    with pytest.raises(ValueError, match="Unknown loss: 'cross'"):
        m.compile(optimizer="sgd", loss="cross")
    with pytest.raises(ValueError, match="Unknown optimizer: 'adamx'"):
        m.compile(optimizer="adamx", loss="mse")
    with pytest.raises(ValueError, match="Unknown metric"):
        m.compile(optimizer="sgd", loss="mse", metrics=["f1"])
    with pytest.raises(ValueError, match="Unknown initializer"):
        layers.Dense(3, kernel_initializer="magic")


def test_fit_or_evaluate_before_compile():
    m = fn.Sequential([layers.Input((4,)), layers.Dense(3)])
    with pytest.raises(ValueError, match="compile"):
        m.fit(X, Y, verbose=0)
    with pytest.raises(ValueError, match="compile"):
        m.evaluate(X, Y, verbose=0)
    with pytest.raises(ValueError, match="compile"):
        m.train_on_batch(X, Y)
    assert m.predict(X, verbose=0).shape == (6, 3)  # inference needs no compile, as in Keras


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(X, Y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        model.fit(X, Y, epochs=-1, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(X, Y, validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="verbose"):
        model.fit(X, Y, verbose=3)
    with pytest.raises(ValueError, match="units"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="learning_rate"):
        fn.optimizers.SGD(learning_rate=-1)
    with pytest.raises(ValueError, match="momentum"):
        fn.optimizers.SGD(momentum=2)
    with pytest.raises(ValueError, match="weight arrays"):
        model.set_weights([np.ones((4, 3))])
    with pytest.raises(ValueError, match="shape"):
        model.set_weights([np.ones((4, 4)), np.ones(3)])


def test_target_shape_mismatch_gives_a_hint():
    m = fn.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        m.fit(X, Y, verbose=0)
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="categorical_crossentropy"):
        m.fit(X, np.eye(3)[Y], verbose=0)


def test_the_model_stays_usable_after_errors(model):
    for bad in (np.full((6, 4), np.nan), np.ones((6, 2))):
        with pytest.raises(ValueError):
            model.fit(bad, Y, verbose=0)
    hist = model.fit(X, Y, epochs=2, verbose=0)
    assert np.isfinite(hist.history["loss"][-1])
