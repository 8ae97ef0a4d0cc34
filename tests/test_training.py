"""End-to-end learning: digits, XOR, reproducibility, Ctrl-C, concurrent models."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import ferronet as fn
from ferronet import layers


def digits_model():
    model = fn.Sequential(
        [
            layers.Input((64,)),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_two_layer_mlp_reaches_95_percent_on_digits(digits):
    x_train, y_train, x_test, y_test = digits
    model = digits_model()
    model.fit(x_train, y_train, batch_size=32, epochs=30, verbose=0)
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    assert acc >= 0.95


def test_sgd_momentum_and_one_hot_targets_on_digits(digits):
    x_train, y_train, x_test, y_test = digits
    model = fn.Sequential(
        [
            layers.Input((64,)),
            layers.Dense(32, activation="tanh"),
            layers.Dense(10),
            layers.Activation("softmax"),
        ]
    )
    model.compile(
        optimizer=fn.optimizers.SGD(0.05, momentum=0.9),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, fn.utils.to_categorical(y_train, 10), epochs=20, verbose=0)
    assert model.evaluate(x_test, fn.utils.to_categorical(y_test, 10), verbose=0)[1] >= 0.93


def test_xor_is_solved():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0], dtype=np.float32)
    model = fn.Sequential(
        [
            layers.Input((2,)),
            layers.Dense(8, activation="tanh"),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=fn.optimizers.Adam(0.05), loss="mse", metrics=["accuracy"])
    model.fit(x, y, batch_size=4, epochs=400, verbose=0)
    pred = model.predict(x, verbose=0)[:, 0]
    np.testing.assert_array_equal(pred > 0.5, y > 0.5)
    assert model.evaluate(x, y, verbose=0)[1] == 1.0


def test_same_seed_gives_bit_identical_weights(digits):
    x, y = digits[0][:500], digits[1][:500]

    def run(seed):
        fn.utils.set_random_seed(seed)
        model = digits_model()
        model.fit(x, y, epochs=3, batch_size=16, verbose=0)
        return model.get_weights()

    a, b, c = run(7), run(7), run(8)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a[0], c[0])


def test_unshuffled_epochs_match_manual_train_on_batch():
    fn.utils.set_random_seed(3)
    a = digits_model()
    b = digits_model()
    b.set_weights(a.get_weights())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=50)
    a.fit(x, y, batch_size=20, epochs=1, shuffle=False, verbose=0)
    for lo in range(0, 50, 20):
        b.train_on_batch(x[lo : lo + 20], y[lo : lo + 20])
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)


def test_non_float32_inputs_are_converted(digits):
    x, y = digits[0][:200], digits[1][:200]
    model = digits_model()
    model.fit(x.astype(np.float64), y.astype(np.uint8), epochs=1, verbose=0)
    model.fit(np.asfortranarray(x), y.astype(np.float32), epochs=1, verbose=0)
    model.fit(x.tolist(), y.tolist(), epochs=1, verbose=0)


def test_ctrl_c_interrupts_fit_and_leaves_the_model_usable():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=20000)
    model = digits_model()
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=10_000, batch_size=32, verbose=0)
    elapsed = time.perf_counter() - start
    timer.join()
    assert elapsed < 0.5 + 1.0
    assert np.all(np.isfinite(model.predict(x[:10], verbose=0)))
    model.fit(x[:100], y[:100], epochs=1, verbose=0)


def test_two_models_trained_in_threads_match_sequential_training(digits):
    x, y = digits[0][:600], digits[1][:600]

    def make():
        fn.utils.set_random_seed(11)
        return digits_model()

    seq = [make(), make()]
    for m in seq:
        m.fit(x, y, epochs=3, verbose=0)
    par = [make(), make()]
    threads = [threading.Thread(target=m.fit, args=(x, y), kwargs={"epochs": 3, "verbose": 0}) for m in par]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(seq, par):
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)


def test_demo_prints_accuracy(capsys):
    from ferronet import demo

    acc = demo.main(["--epochs", "20", "--verbose", "0"])
    assert acc >= 0.95
    assert "test accuracy" in capsys.readouterr().out
